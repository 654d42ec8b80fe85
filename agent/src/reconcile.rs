//! The contract every concern keeps when the desired state changes (a reload, an agent start):
//! it compares what it runs with its part of the new desired state and answers what it did —
//! nothing, applied, restarted processes, or that the change waits for an agent restart. The
//! reload answer lists each concern's outcome, so no change is ever ignored silently.

use serde::{Deserialize, Serialize};

/// What one concern did with a new desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// Its part of the desired state is what it runs already.
    Unchanged,
    /// The change is in force; `what` says what was done.
    Applied { what: String },
    /// The change needed these Flink processes restarted, in this order.
    Restarted { processes: Vec<String> },
    /// The change takes effect when the agent restarts; `keys` are the settings concerned.
    NeedsAgentRestart { keys: Vec<String> },
    /// The change could not be applied; what runs stays as it was.
    Failed { error: String },
}

/// One concern's answer, as the reload report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub concern: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Report {
    pub fn new(concern: &str, outcome: Outcome) -> Self {
        Self {
            concern: concern.to_string(),
            outcome,
        }
    }

    /// One line for logs and the CLI, e.g. `supervisor: restarted jobmanager, taskmanager`.
    pub fn line(&self) -> String {
        let what = match &self.outcome {
            Outcome::Unchanged => "unchanged".to_string(),
            Outcome::Applied { what } => format!("applied ({what})"),
            Outcome::Restarted { processes } => format!("restarted {}", processes.join(", ")),
            Outcome::NeedsAgentRestart { keys } => format!(
                "{} changed: takes effect when the agent restarts (`systemctl restart flink-agent`; Flink keeps running)",
                keys.join(", ")
            ),
            Outcome::Failed { error } => format!("FAILED, unchanged: {error}"),
        };
        format!("{}: {what}", self.concern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_flat_json_with_the_outcome_named() {
        let r = Report::new(
            "supervisor",
            Outcome::Restarted {
                processes: vec!["taskmanager".into()],
            },
        );
        assert_eq!(
            serde_json::to_value(&r).expect("serializes"),
            serde_json::json!({"concern": "supervisor", "outcome": "restarted", "processes": ["taskmanager"]})
        );
        assert_eq!(r.line(), "supervisor: restarted taskmanager");
        let back: Report =
            serde_json::from_value(serde_json::to_value(&r).expect("json")).expect("parses");
        assert_eq!(back, r);
    }
}
