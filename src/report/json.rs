//! `--output json`: one JSON object per line on stdout for every event, then the recap as
//! `{"event":"recap",...}`.

use std::io::Write;
use std::sync::Mutex;

use super::{Event, Recap, Reporter};

pub struct JsonReporter<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> JsonReporter<W> {
    pub fn new(out: W) -> Self {
        JsonReporter {
            out: Mutex::new(out),
        }
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    fn line(&self, v: &serde_json::Value) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A closed stdout (e.g. `| head`) must not crash the run.
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    }
}

impl<W: Write + Send> Reporter for JsonReporter<W> {
    fn event(&self, event: &Event) {
        if let Ok(v) = serde_json::to_value(event) {
            self.line(&v);
        }
    }

    fn finish(&self, recap: &Recap) {
        let mut v = serde_json::to_value(recap).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("event".into(), "recap".into());
            o.insert("exit_code".into(), recap.exit_code().into());
        }
        self.line(&v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{HostOutcome, ResourceStatus};

    #[test]
    fn events_are_json_lines() {
        let r = JsonReporter::new(Vec::new());
        r.event(&Event::Resource {
            host: "c1".into(),
            resource: "file:/etc/sysconfig/netdump".into(),
            status: ResourceStatus::Changed,
            summary: "create".into(),
            diff: None,
            check: true,
        });
        r.event(&Event::HostDone {
            host: "c1".into(),
            outcome: HostOutcome::Failed("boom".into()),
        });
        r.finish(&Recap::default());
        let text = String::from_utf8(r.into_inner()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["event"], "resource");
        assert_eq!(lines[0]["status"], "changed");
        assert_eq!(lines[0]["check"], true);
        assert_eq!(lines[1]["outcome"]["status"], "failed");
        assert_eq!(lines[1]["outcome"]["reason"], "boom");
        assert_eq!(lines[2]["event"], "recap");
        assert_eq!(lines[2]["exit_code"], 0);
    }
}
