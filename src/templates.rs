//! Template rendering (minijinja). Defaults are embedded from `templates/*.j2`; `--templates DIR`
//! overrides any of them by file name.

use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};

/// The templates shipped in the binary, by name.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("netdump.j2", include_str!("../templates/netdump.j2")),
    (
        "netdump-receiver.service.j2",
        include_str!("../templates/netdump-receiver.service.j2"),
    ),
    (
        "sysctl-netdump.conf.j2",
        include_str!("../templates/sysctl-netdump.conf.j2"),
    ),
    (
        "sshd-netdump.conf.j2",
        include_str!("../templates/sshd-netdump.conf.j2"),
    ),
    (
        "kdump-tools.j2",
        include_str!("../templates/kdump-tools.j2"),
    ),
    ("kdump.conf.j2", include_str!("../templates/kdump.conf.j2")),
    (
        "netconsole.service.j2",
        include_str!("../templates/netconsole.service.j2"),
    ),
    (
        "netconsole-modprobe.conf.j2",
        include_str!("../templates/netconsole-modprobe.conf.j2"),
    ),
    (
        "netdump-server.conf.j2",
        include_str!("../templates/netdump-server.conf.j2"),
    ),
    (
        "ssh-client-netdump.conf.j2",
        include_str!("../templates/ssh-client-netdump.conf.j2"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "template {name}: cannot read override {path}: {source}. Fix the file or drop --templates"
    )]
    Read {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {name}: {message}. Fix the template (see templates/{name} for the default)")]
    Render { name: String, message: String },
    #[error("template {0} is unknown; known templates: {1}")]
    Unknown(String, String),
}

/// Renders the project's templates, with optional per-name overrides from a directory.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn new(override_dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .keep_trailing_newline(true)
                .build()
                .expect("static syntax configuration is valid"),
        );
        for (name, text) in EMBEDDED {
            let source = match override_dir.map(|d| d.join(name)) {
                Some(p) if p.exists() => {
                    std::fs::read_to_string(&p).map_err(|source| TemplateError::Read {
                        name: name.to_string(),
                        path: p.clone(),
                        source,
                    })?
                }
                _ => text.to_string(),
            };
            env.add_template_owned(name.to_string(), source)
                .map_err(|e| TemplateError::Render {
                    name: name.to_string(),
                    message: describe(&e),
                })?;
        }
        Ok(Templates { env })
    }

    pub fn render<S: serde::Serialize>(&self, name: &str, ctx: S) -> Result<String, TemplateError> {
        let tmpl = self.env.get_template(name).map_err(|_| {
            TemplateError::Unknown(
                name.to_string(),
                EMBEDDED
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })?;
        tmpl.render(minijinja::Value::from(minijinja::value::Serde(&ctx)))
            .map_err(|e| TemplateError::Render {
                name: name.to_string(),
                message: describe(&e),
            })
    }
}

fn describe(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    if let Some(line) = e.line() {
        s = format!("line {line}: {s}");
    }
    s
}

#[cfg(test)]
mod tests {
    /// The files rendered from these are read back on every run by the host's shell itself,
    /// which it does only for printable ASCII (anything else costs a `base64` per file and
    /// run), and the oldest clients' init scripts predate UTF-8 locales.
    #[test]
    fn embedded_templates_are_printable_ascii() {
        for (name, text) in super::EMBEDDED {
            for (i, line) in text.lines().enumerate() {
                assert!(
                    line.bytes()
                        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b)),
                    "{name}:{}: not printable ASCII: {line}",
                    i + 1
                );
            }
        }
    }
}
