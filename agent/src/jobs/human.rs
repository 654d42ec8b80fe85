//! The jobs and checkpoint-sync part of `flink-agent status` / `flink-agent jobs` for people.

use super::JobStatus;
use crate::checkpoints::SyncStatus;
use std::fmt::Write;

/// What `jobs` says when there is nothing to list.
pub const NO_JOBS: &str = "jobs: none declared (`flink-agent jobs deploy NAME --jar PATH`)";

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// One line for the sync (with its alert, if any) and a table of the declared jobs; nothing
/// when there is neither (an agent without the sync, e.g. in tests).
pub fn render_human(jobs: &[JobStatus], sync: Option<&SyncStatus>) -> String {
    let mut out = String::new();
    if let Some(s) = sync {
        let _ = writeln!(
            out,
            "checkpoints → {}: {} pending upload, {} failed attempt(s)",
            s.url,
            s.pending.len(),
            s.consecutive_failures
        );
        if let Some(alert) = &s.alert {
            let _ = writeln!(out, "  ALERT: {alert}");
        }
    }
    if jobs.is_empty() {
        if sync.is_some() {
            let _ = writeln!(out, "{NO_JOBS}");
        }
        return out;
    }
    let rows: Vec<[String; 6]> = jobs
        .iter()
        .map(|j| {
            [
                j.name.clone(),
                j.state.clone(),
                opt(j.flink_job_id.as_deref()),
                opt(j.last_completed_checkpoint),
                opt(j.last_durable_checkpoint),
                j.restored_from.as_ref().map_or("-".into(), |r| {
                    format!("chk-{} ({})", r.checkpoint_id, r.source)
                }),
            ]
        })
        .collect();
    let header = [
        "JOB",
        "STATE",
        "FLINK JOB ID",
        "LAST CHECKPOINT",
        "DURABLE",
        "RESTORED FROM",
    ]
    .map(String::from);
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::RestoredFrom;

    #[test]
    fn shows_alert_and_restore_source() {
        let sync = SyncStatus {
            url: "s3://b/p".into(),
            alert: Some("checkpoints are not reaching s3://b/p".into()),
            ..Default::default()
        };
        let job = JobStatus {
            name: "counter".into(),
            state: "RUNNING".into(),
            last_durable_checkpoint: Some(41),
            restored_from: Some(RestoredFrom {
                checkpoint_id: 40,
                source: "remote".into(),
                path: "/x".into(),
            }),
            ..Default::default()
        };
        let text = render_human(&[job], Some(&sync));
        assert!(
            text.contains("ALERT: checkpoints are not reaching"),
            "{text}"
        );
        assert!(text.contains("chk-40 (remote)"), "{text}");
        assert!(text.contains("counter  RUNNING"), "{text}");
    }
}
