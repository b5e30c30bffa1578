//! The scorecard: one line per check, for people (text), machines (JSON) and docs (Markdown).

use std::fmt::Write as _;

use serde_json::{Value, json};

/// How a check ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The plugin did what the spec requires.
    Pass,
    /// It did not; the text says what it did instead.
    Fail(String),
    /// The check does not apply to this plugin or configuration; the text says why.
    NotApplicable(String),
}

impl Outcome {
    /// The word used in every output format.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::NotApplicable(_) => "n/a",
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Pass => None,
            Outcome::Fail(reason) | Outcome::NotApplicable(reason) => Some(reason),
        }
    }
}

/// One scored check.
#[derive(Clone, Debug)]
pub struct Record {
    /// Stable identifier, e.g. `del.master-gone` or `add.result@0.3.1`.
    pub id: String,
    /// What the spec requires, in one line.
    pub requirement: String,
    /// The verdict.
    pub outcome: Outcome,
}

/// Every check of one run.
#[derive(Clone, Debug, Default)]
pub struct Scorecard {
    /// The plugin binary.
    pub plugin: String,
    /// The configuration file.
    pub config: String,
    /// The versions the plugin's VERSION claimed.
    pub claimed: Vec<String>,
    /// The checks, in the order they ran.
    pub records: Vec<Record>,
}

impl Scorecard {
    fn count(&self, word: &str) -> usize {
        self.records.iter().filter(|r| r.outcome.word() == word).count()
    }

    /// True if no check failed.
    pub fn passed(&self) -> bool {
        self.count("fail") == 0
    }

    /// `N passed, N failed, N not applicable`.
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} not applicable",
            self.count("pass"),
            self.count("fail"),
            self.count("n/a")
        )
    }

    /// The readable scorecard: a header, one line per check, a summary.
    pub fn text(&self) -> String {
        let width = self.records.iter().map(|r| r.id.len()).max().unwrap_or(0);
        let mut out = format!(
            "cni-conformance: {}\nconfig: {}\nclaimed versions: {}\n\n",
            self.plugin,
            self.config,
            self.claimed.join(" ")
        );
        for record in &self.records {
            let detail = record.outcome.reason().unwrap_or(&record.requirement);
            let _ = writeln!(
                out,
                "{:<4}  {:<width$}  {detail}",
                record.outcome.word().to_uppercase(),
                record.id
            );
        }
        let _ = writeln!(out, "\n{}", self.summary());
        out
    }

    /// The scorecard for machines.
    pub fn json(&self) -> Value {
        json!({
            "plugin": self.plugin,
            "config": self.config,
            "claimedVersions": self.claimed,
            "passed": self.passed(),
            "summary": {
                "pass": self.count("pass"),
                "fail": self.count("fail"),
                "notApplicable": self.count("n/a"),
            },
            "checks": self.records.iter().map(|r| json!({
                "id": r.id,
                "requirement": r.requirement,
                "outcome": r.outcome.word(),
                "reason": r.outcome.reason(),
            })).collect::<Vec<_>>(),
        })
    }

    /// A Markdown table for docs/conformance.md.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Plugin `{}`, configuration `{}`, claimed versions {}: **{}**.\n\n| check | result | requirement, or why not |\n|---|---|---|\n",
            self.plugin,
            self.config,
            self.claimed.join(", "),
            self.summary()
        );
        for record in &self.records {
            let detail = match record.outcome.reason() {
                Some(reason) => reason.replace('|', "\\|"),
                None => record.requirement.clone(),
            };
            let _ = writeln!(out, "| `{}` | {} | {} |", record.id, record.outcome.word(), detail);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> Scorecard {
        Scorecard {
            plugin: "p".into(),
            config: "c".into(),
            claimed: vec!["1.0.0".into()],
            records: vec![
                Record {
                    id: "a".into(),
                    requirement: "does a".into(),
                    outcome: Outcome::Pass,
                },
                Record {
                    id: "b".into(),
                    requirement: "does b".into(),
                    outcome: Outcome::Fail("did | not".into()),
                },
                Record {
                    id: "c".into(),
                    requirement: "does c".into(),
                    outcome: Outcome::NotApplicable("no c".into()),
                },
            ],
        }
    }

    #[test]
    fn one_failure_fails_the_card_and_every_format_shows_it() {
        let card = card();
        assert!(!card.passed());
        assert_eq!(card.summary(), "1 passed, 1 failed, 1 not applicable");
        assert!(card.text().contains("FAIL  b  did | not"));
        assert!(card.markdown().contains("| `b` | fail | did \\| not |"));
        assert_eq!(card.json()["checks"][2]["outcome"], "n/a");
        assert_eq!(card.json()["passed"], false);
    }
}
