//! A service: enabled at boot, running, restarted (or reloaded) when its inputs changed.

use super::{Change, Observed, Plan, PlanContext, Resource, ResourceError, sh_quote};

pub use crate::facts::InitSystem;

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub init: InitSystem,
    /// `Some(true)`: enabled at boot; `None`: leave as is.
    pub enabled: Option<bool>,
    pub running: bool,
    /// Resource ids whose change restarts (or reloads) the service.
    pub restart_on: Vec<String>,
    /// Resource ids whose change needs `systemctl daemon-reload` first (unit files).
    pub daemon_reload_on: Vec<String>,
    /// Reload instead of restart (sshd).
    pub reload: bool,
    /// How the user turns service management off for this host (the caller knows its
    /// configuration); named in the error when there is no init system.
    pub opt_out: &'static str,
    /// Command that must succeed before a restart/reload (e.g. `sshd -t`).
    pub validate: Option<String>,
}

impl Resource for Service {
    fn id(&self) -> String {
        format!("service:{}", self.name)
    }

    fn observe_script(&self) -> String {
        let n = sh_quote(&self.name);
        match self.init {
            InitSystem::Systemd => format!(
                "echo \"enabled=$(systemctl is-enabled {n} 2>/dev/null)\"; echo \"active=$(systemctl is-active {n} 2>/dev/null)\""
            ),
            InitSystem::Sysv => format!(
                "if command -v chkconfig >/dev/null 2>&1; then \
                   if chkconfig --list {n} 2>/dev/null | grep -q '3:on'; then echo enabled=enabled; else echo enabled=disabled; fi; \
                 elif ls /etc/rc2.d/S*{name} >/dev/null 2>&1 || ls /etc/rc3.d/S*{name} >/dev/null 2>&1; then echo enabled=enabled; \
                 else echo enabled=disabled; fi\n\
                 if service {n} status >/dev/null 2>&1; then echo active=active; else echo active=inactive; fi",
                name = self.name.replace(['\'', '/', ' '], "")
            ),
            InitSystem::None => "echo init=none".to_string(),
        }
    }

    /// `systemctl` gives up on its own (its bus calls time out); a SysV `service NAME status`
    /// runs the init script, which may wait on anything.
    fn observation_may_wait(&self) -> bool {
        self.init == InitSystem::Sysv
    }

    fn observation_in_place(&self) -> bool {
        true
    }

    fn plan(&self, observed: &Observed, ctx: &PlanContext) -> Result<Plan, ResourceError> {
        if self.init == InitSystem::None {
            return Err(ResourceError::Invalid {
                id: self.id(),
                detail: format!(
                    "no init system found (neither systemd nor SysV init); start the service \
                     yourself and {}",
                    self.opt_out
                ),
            });
        }
        let n = sh_quote(&self.name);
        let enabled = matches!(
            observed.field("enabled"),
            Some("enabled" | "static" | "alias" | "enabled-runtime")
        );
        let active = observed.field("active") == Some("active");
        let triggers: Vec<&String> = self
            .restart_on
            .iter()
            .filter(|id| ctx.changed.contains(*id))
            .collect();
        let needs_reload_units = self.init == InitSystem::Systemd
            && self
                .daemon_reload_on
                .iter()
                .any(|id| ctx.changed.contains(id));

        let mut steps = Vec::new();
        let mut summary = Vec::new();
        if needs_reload_units {
            steps.push("systemctl daemon-reload".to_string());
        }
        if self.enabled == Some(true) && !enabled {
            steps.push(match self.init {
                InitSystem::Systemd => format!("systemctl enable {n}"),
                _ => format!(
                    "if command -v chkconfig >/dev/null 2>&1; then chkconfig {n} on; else update-rc.d {n} defaults; fi"
                ),
            });
            summary.push("enable".to_string());
        }
        let verb = if !active && self.running {
            Some("start")
        } else if active && !triggers.is_empty() {
            Some(if self.reload { "reload" } else { "restart" })
        } else {
            None
        };
        if let Some(verb) = verb {
            if let Some(v) = &self.validate {
                steps.push(v.clone());
            }
            steps.push(match self.init {
                InitSystem::Systemd => format!("systemctl {verb} {n}"),
                _ => format!("service {n} {verb}"),
            });
            if triggers.is_empty() {
                summary.push(verb.to_string());
            } else {
                let why: Vec<String> = triggers.iter().map(|t| t.to_string()).collect();
                summary.push(format!("{verb} ({} changed)", why.join(", ")));
            }
        }
        if summary.is_empty() {
            return Ok(Plan::Ok);
        }
        Ok(Plan::Change(Change::new(
            summary.join(", "),
            format!("set -e\n{}\n", steps.join("\n")),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Service {
        Service {
            name: "netdump-receiver".into(),
            init: InitSystem::Systemd,
            enabled: Some(true),
            running: true,
            restart_on: vec!["file:/usr/local/sbin/netdump-provision".into()],
            daemon_reload_on: vec!["file:/etc/systemd/system/netdump-receiver.service".into()],
            reload: false,
            validate: None,
            opt_out: "stop managing it",
        }
    }

    fn o(t: &str) -> Observed {
        Observed {
            text: t.into(),
            status: 0,
        }
    }

    #[test]
    fn steady_state_is_ok_and_restarts_only_on_trigger() {
        let s = svc();
        let mut ctx = PlanContext::default();
        assert!(matches!(
            s.plan(&o("enabled=enabled\nactive=active\n"), &ctx)
                .unwrap(),
            Plan::Ok
        ));
        ctx.changed
            .insert("file:/usr/local/sbin/netdump-provision".into());
        let Plan::Change(c) = s
            .plan(&o("enabled=enabled\nactive=active\n"), &ctx)
            .unwrap()
        else {
            panic!()
        };
        assert!(c.summary.starts_with("restart ("));
        assert!(c.script.contains("systemctl restart 'netdump-receiver'"));
    }

    #[test]
    fn new_unit_is_reloaded_enabled_and_started() {
        let s = svc();
        let mut ctx = PlanContext::default();
        ctx.changed
            .insert("file:/etc/systemd/system/netdump-receiver.service".into());
        let Plan::Change(c) = s.plan(&o("enabled=\nactive=inactive\n"), &ctx).unwrap() else {
            panic!()
        };
        assert_eq!(c.summary, "enable, start");
        let lines: Vec<&str> = c.script.lines().collect();
        assert_eq!(lines[1], "systemctl daemon-reload");
        assert!(lines[2].contains("enable") && lines[3].contains("start"));
    }

    #[test]
    fn reload_with_validation_and_no_init_error() {
        let mut s = svc();
        s.reload = true;
        s.validate = Some("sshd -t".into());
        let mut ctx = PlanContext::default();
        ctx.changed
            .insert("file:/usr/local/sbin/netdump-provision".into());
        let Plan::Change(c) = s
            .plan(&o("enabled=enabled\nactive=active\n"), &ctx)
            .unwrap()
        else {
            panic!()
        };
        assert!(c.script.contains("sshd -t\nsystemctl reload"));
        s.init = InitSystem::None;
        assert!(
            s.plan(&o("init=none\n"), &ctx)
                .unwrap_err()
                .to_string()
                .contains("start the service yourself and stop managing it")
        );
    }

    #[test]
    fn sysv_uses_chkconfig_or_update_rc_d() {
        let mut s = svc();
        s.init = InitSystem::Sysv;
        s.name = "netdump".into();
        let Plan::Change(c) = s
            .plan(
                &o("enabled=disabled\nactive=inactive\n"),
                &PlanContext::default(),
            )
            .unwrap()
        else {
            panic!()
        };
        assert!(c.script.contains("chkconfig 'netdump' on"));
        assert!(c.script.contains("service 'netdump' start"));
    }
}
