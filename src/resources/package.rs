//! An installed package, through the host's package manager.

use super::{Change, Observed, Plan, PlanContext, Resource, ResourceError, sh_quote};
use std::time::Duration;

pub use crate::facts::PackageManager;

#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub manager: PackageManager,
    /// How the user turns package management off for this host (the caller knows its
    /// configuration); named in the error when there is no package manager.
    pub opt_out: &'static str,
}

impl Resource for Package {
    fn id(&self) -> String {
        format!("package:{}", self.name)
    }

    fn observe_script(&self) -> String {
        let n = sh_quote(&self.name);
        match self.manager {
            PackageManager::Apt => format!(
                "if dpkg-query -W -f='${{Status}}' {n} 2>/dev/null | grep -q 'install ok installed'; then echo installed=yes; else echo installed=no; fi"
            ),
            PackageManager::None => "echo installed=unknown".to_string(),
            _ => format!(
                "if rpm -q {n} >/dev/null 2>&1; then echo installed=yes; else echo installed=no; fi"
            ),
        }
    }

    /// `dpkg-query` reads dpkg's status file without its lock; `rpm -q` can wait for the rpm
    /// database's lock while a transaction holds it.
    fn observation_may_wait(&self) -> bool {
        matches!(
            self.manager,
            PackageManager::Dnf | PackageManager::Yum | PackageManager::Up2date
        )
    }

    fn observation_in_place(&self) -> bool {
        true
    }

    fn plan(&self, observed: &Observed, _ctx: &PlanContext) -> Result<Plan, ResourceError> {
        let n = sh_quote(&self.name);
        match observed.field("installed") {
            Some("yes") => Ok(Plan::Ok),
            Some("no") => {
                let script = match self.manager {
                    PackageManager::Apt => format!(
                        "export DEBIAN_FRONTEND=noninteractive\napt-get install -y -q -o Dpkg::Options::=--force-confold {n} || {{ apt-get update -q && apt-get install -y -q -o Dpkg::Options::=--force-confold {n}; }}"
                    ),
                    PackageManager::Dnf => format!("dnf install -y -q {n}"),
                    PackageManager::Yum => format!("yum install -y -q {n}"),
                    PackageManager::Up2date => format!("up2date -i {n}"),
                    PackageManager::None => unreachable!("observe prints unknown"),
                };
                Ok(Plan::Change(
                    Change::new("install", script).with_timeout(Duration::from_secs(900)),
                ))
            }
            _ => Err(ResourceError::Invalid {
                id: self.id(),
                detail: format!(
                    "no supported package manager (apt, dnf, yum, up2date) on this host; install \
                     the package yourself and {}",
                    self.opt_out
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_per_manager() {
        let o = |t: &str| Observed {
            text: t.into(),
            status: 0,
        };
        let p = Package {
            name: "kdump-tools".into(),
            manager: PackageManager::Apt,
            opt_out: "stop managing it",
        };
        assert!(matches!(
            p.plan(&o("installed=yes\n"), &PlanContext::default())
                .unwrap(),
            Plan::Ok
        ));
        let Plan::Change(c) = p
            .plan(&o("installed=no\n"), &PlanContext::default())
            .unwrap()
        else {
            panic!()
        };
        assert!(c.script.contains("apt-get install -y -q"));
        let p = Package {
            name: "netdump".into(),
            manager: PackageManager::None,
            opt_out: "stop managing it",
        };
        assert!(
            p.plan(&o("installed=unknown\n"), &PlanContext::default())
                .is_err()
        );
    }
}
