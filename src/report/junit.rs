//! JUnit XML for CI systems.

use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

/// One result line in a JUnit report.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub classname: String,
    pub passed: bool,
    pub message: Option<String>,
    pub duration: Duration,
    /// Extra text (phase timings, paths) for `system-out`.
    pub output: String,
}

pub fn render(report_name: &str, suite_name: &str, cases: &[Case]) -> Result<String, String> {
    let mut report = Report::new(report_name);
    let mut suite = TestSuite::new(suite_name);
    for c in cases {
        let status = if c.passed {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            if let Some(m) = &c.message {
                s.set_message(m.clone());
            }
            s
        };
        let mut tc = TestCase::new(c.name.clone(), status);
        tc.set_classname(c.classname.clone());
        tc.set_time(c.duration);
        if !c.output.is_empty() {
            tc.set_system_out(c.output.clone());
        }
        suite.add_test_case(tc);
    }
    report.add_test_suite(suite);
    report.to_string().map_err(|e| e.to_string())
}

pub fn write(
    path: &Path,
    report_name: &str,
    suite_name: &str,
    cases: &[Case],
) -> std::io::Result<()> {
    let xml = render(report_name, suite_name, cases).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("xml.tmp");
    std::fs::write(&tmp, xml)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_failures_and_successes() {
        let xml = render(
            "provision",
            "test-crash",
            &[
                Case {
                    name: "c1".into(),
                    classname: "test-crash".into(),
                    passed: true,
                    message: None,
                    duration: Duration::from_secs(80),
                    output: "trigger 1.0s".into(),
                },
                Case {
                    name: "c2".into(),
                    classname: "test-crash".into(),
                    passed: false,
                    message: Some("dump did not arrive within 600s".into()),
                    duration: Duration::from_secs(600),
                    output: String::new(),
                },
            ],
        )
        .unwrap();
        assert!(
            xml.contains("tests=\"2\"") && xml.contains("failures=\"1\""),
            "{xml}"
        );
        assert!(xml.contains("dump did not arrive within 600s"));
    }
}
