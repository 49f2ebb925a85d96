//! A kernel parameter's live value (the persistent part is a File in /etc/sysctl.d).

use super::{Change, Observed, Plan, PlanContext, Resource, ResourceError, sh_quote};

#[derive(Debug, Clone)]
pub struct Sysctl {
    /// Dotted key, e.g. `kernel.sysrq`.
    pub key: String,
    pub value: String,
}

impl Sysctl {
    fn proc_path(&self) -> String {
        format!("/proc/sys/{}", self.key.replace('.', "/"))
    }
}

impl Resource for Sysctl {
    fn id(&self) -> String {
        format!("sysctl:{}", self.key)
    }

    fn observe_script(&self) -> String {
        let p = sh_quote(&self.proc_path());
        // `read`, not `cat`: a builtin, and every value managed here is one line.
        format!(
            "if [ -e {p} ]; then v=; read -r v < {p}; echo \"value=$v\"; else echo value-missing=1; fi"
        )
    }

    fn observation_may_wait(&self) -> bool {
        false
    }

    fn observation_in_place(&self) -> bool {
        true
    }

    fn plan(&self, observed: &Observed, _ctx: &PlanContext) -> Result<Plan, ResourceError> {
        if observed.field("value-missing").is_some() {
            return Err(ResourceError::Invalid {
                id: self.id(),
                detail: format!(
                    "{} does not exist: this kernel lacks the feature (for kernel.sysrq: CONFIG_MAGIC_SYSRQ)",
                    self.proc_path()
                ),
            });
        }
        let current =
            observed
                .field("value")
                .map(str::trim)
                .ok_or_else(|| ResourceError::Observe {
                    id: self.id(),
                    detail: "no value line".into(),
                })?;
        let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        if norm(current) == norm(&self.value) {
            return Ok(Plan::Ok);
        }
        Ok(Plan::Change(Change::new(
            format!("{current} -> {}", self.value),
            format!(
                "printf '%s\\n' {} > {}",
                sh_quote(&self.value),
                sh_quote(&self.proc_path())
            ),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_live_value() {
        let s = Sysctl {
            key: "kernel.sysrq".into(),
            value: "1".into(),
        };
        let o = |t: &str| Observed {
            text: t.into(),
            status: 0,
        };
        assert!(matches!(
            s.plan(&o("value=1\n"), &PlanContext::default()).unwrap(),
            Plan::Ok
        ));
        let Plan::Change(c) = s.plan(&o("value=176\n"), &PlanContext::default()).unwrap() else {
            panic!()
        };
        assert_eq!(c.summary, "176 -> 1");
        assert!(c.script.ends_with("> '/proc/sys/kernel/sysrq'"));
        assert!(
            s.plan(&o("value-missing=1\n"), &PlanContext::default())
                .is_err()
        );
    }
}
