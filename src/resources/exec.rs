//! A command run when other resources changed (a handler), unless its check says it is done.

use super::{Change, Observed, Plan, PlanContext, Resource, ResourceError};

#[derive(Debug, Clone)]
pub struct Exec {
    /// Short name for the id (`exec:<name>`).
    pub name: String,
    /// Shell snippet whose exit status 0 means "already done" (`None`: never done by itself).
    pub check: Option<String>,
    /// What to run.
    pub script: String,
    /// Run when one of these resources changed in this run (also when `check` fails).
    pub on_change: Vec<String>,
}

impl Resource for Exec {
    fn id(&self) -> String {
        format!("exec:{}", self.name)
    }

    fn observe_script(&self) -> String {
        match &self.check {
            Some(c) => {
                format!("if {{ {c}\n}} >/dev/null 2>&1; then echo done=yes; else echo done=no; fi")
            }
            None => "echo done=unknown".into(),
        }
    }

    fn plan(&self, observed: &Observed, ctx: &PlanContext) -> Result<Plan, ResourceError> {
        let triggered: Vec<&String> = self
            .on_change
            .iter()
            .filter(|id| ctx.changed.contains(*id))
            .collect();
        let done = match observed.field("done") {
            Some("yes") => true,
            Some("no") | Some("unknown") => false,
            _ => {
                return Err(ResourceError::Observe {
                    id: self.id(),
                    detail: "no done line".into(),
                });
            }
        };
        let needed = !triggered.is_empty() || (self.check.is_some() && !done);
        if !needed {
            return Ok(Plan::Ok);
        }
        let why = if triggered.is_empty() {
            "check failed".to_string()
        } else {
            format!(
                "{} changed",
                triggered
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Ok(Plan::Change(Change::new(
            format!("run ({why})"),
            format!("set -e\n{}\n", self.script),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::resources::observe_local as sh;

    #[test]
    fn runs_on_trigger_or_failed_check_only() {
        let e = Exec {
            name: "update-grub".into(),
            check: Some("true".into()),
            script: "update-grub".into(),
            on_change: vec!["file:/etc/default/grub.d/x.cfg".into()],
        };
        let mut ctx = PlanContext::default();
        assert!(matches!(
            e.plan(&sh(&e.observe_script()), &ctx).unwrap(),
            Plan::Ok
        ));
        ctx.changed.insert("file:/etc/default/grub.d/x.cfg".into());
        let Plan::Change(c) = e.plan(&sh(&e.observe_script()), &ctx).unwrap() else {
            panic!()
        };
        assert!(c.summary.contains("x.cfg changed"));
        let e2 = Exec {
            check: Some("false".into()),
            ..e
        };
        let Plan::Change(c) = e2
            .plan(&sh(&e2.observe_script()), &PlanContext::default())
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(c.summary, "run (check failed)");
    }
}
