//! What `status` and `flink-agent tls show` say about TLS: mode, the certificates in force with
//! their end dates, the rotation under way, and an alert when a certificate nears its end (7 days
//! or 10% of its life before, whichever is earlier) or when new material was refused.

use super::cert::{days_between, format_time, CertInfo};
use super::generation::Generation;
use super::plan::{expiry, Window};
use super::settings::Settings;
use crate::config::{FieldError, TlsMode};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// TLS as `GET /v1/tls` and `status` show it. No secret: subjects, dates, fingerprints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TlsStatus {
    pub enabled: bool,
    pub mode: String,
    pub protocol: String,
    pub rest_client_auth: bool,
    /// The generation of stores Flink runs with.
    pub generation: String,
    /// The rotation step that made it, and what follows.
    pub rotation: String,
    /// The earliest end among the certificates in force, and the days left until then.
    pub not_after: Option<String>,
    pub days_left: Option<i64>,
    /// `ca` and `self-signed`: when the node certificate is renewed (2/3 of its life).
    pub renews_at: Option<String>,
    /// Why an operator must act, if they must.
    pub alert: Option<String>,
    pub certificates: Vec<CertificateView>,
    /// Unix seconds.
    pub last_check: Option<u64>,
    pub next_check: Option<u64>,
    /// Material refused by the last check (the generation in force stays).
    #[serde(default)]
    pub refused: Vec<String>,
}

/// One certificate in force.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CertificateView {
    /// `node`, `rest`, `internal CA`, `REST client CA`, `agent client`.
    pub role: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub sha256: String,
    pub not_before: String,
    pub not_after: String,
    /// `not_after` in Unix seconds, for `/metrics` (alerts compare it with `time()`).
    #[serde(default)]
    pub not_after_unix: u64,
    pub days_left: i64,
    pub names: Vec<String>,
    pub alert: bool,
}

/// The periodic check as the daemon runs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checks {
    pub last: Option<SystemTime>,
    pub next: Option<SystemTime>,
    pub refused: Vec<FieldError>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn window(c: &CertInfo) -> Window {
    Window {
        not_before: c.not_before,
        not_after: c.not_after,
    }
}

fn view(role: &str, c: &CertInfo, now: SystemTime) -> CertificateView {
    CertificateView {
        role: role.to_string(),
        subject: c.subject.clone(),
        issuer: c.issuer.clone(),
        serial: c.serial.clone(),
        sha256: c.fingerprint.0.clone(),
        not_before: format_time(c.not_before),
        not_after: format_time(c.not_after),
        not_after_unix: unix(c.not_after),
        days_left: days_between(now, c.not_after),
        names: c
            .dns_names
            .iter()
            .cloned()
            .chain(c.ip_addresses.iter().map(ToString::to_string))
            .collect(),
        alert: expiry(&window(c), now).alert,
    }
}

impl TlsStatus {
    /// The status of `generation` under `settings` at `now`. Pure.
    pub fn of(
        settings: &Settings,
        generation: Option<&Generation>,
        checks: &Checks,
        now: SystemTime,
    ) -> Self {
        let (Some(g), true) = (generation, settings.enabled) else {
            return TlsStatus::default();
        };
        let mut status = TlsStatus {
            enabled: true,
            mode: settings.mode.name().to_string(),
            protocol: settings.flink.protocol.as_str().to_string(),
            rest_client_auth: settings.flink.rest_client_auth,
            generation: g.id.clone(),
            last_check: checks.last.map(unix),
            next_check: checks.next.map(unix),
            refused: checks.refused.iter().map(ToString::to_string).collect(),
            ..TlsStatus::default()
        };
        let Some(f) = &g.facts else {
            status.rotation = "no certificates yet (made at the agent's start)".into();
            return status;
        };
        status.rotation = match &f.next_step {
            Some(next) => format!(
                "{} in force; {next} follows once Flink is healthy again for {} s",
                f.step,
                settings.step_pause.as_secs()
            ),
            None => format!("idle (last step: {})", f.step),
        };
        let mut certs = vec![view("node", &f.node, now)];
        certs.extend(f.rest.iter().map(|c| view("rest", c, now)));
        certs.extend(f.trusted.iter().map(|c| view("internal CA", c, now)));
        certs.extend(
            f.rest_clients
                .iter()
                .map(|c| view("REST client CA", c, now)),
        );
        certs.extend(f.agent_client.iter().map(|c| view("agent client", c, now)));
        let earliest = [Some(&f.node), f.rest.as_ref()]
            .into_iter()
            .flatten()
            .chain(&f.trusted)
            .min_by_key(|c| c.not_after);
        if let Some(c) = earliest {
            status.not_after = Some(format_time(c.not_after));
            status.days_left = Some(days_between(now, c.not_after));
        }
        if settings.mode != TlsMode::Files {
            status.renews_at = Some(format_time(window(&f.node).renew_at()));
        }
        let mut alerts: Vec<String> = certs
            .iter()
            .filter(|c| c.alert)
            .map(|c| {
                let when = if c.days_left < 0 {
                    "EXPIRED".to_string()
                } else {
                    format!("expires in {} day(s)", c.days_left)
                };
                let fix = match (settings.mode, c.role.as_str()) {
                    (TlsMode::Files, "node" | "rest" | "internal CA") => {
                        "; deliver renewed files and reload"
                    }
                    (TlsMode::Ca, "internal CA") => "; rotate to a new CA (tls.ca_cert_file)",
                    _ => "; the agent renews it at its next check: see `flink-agent tls show`",
                };
                format!(
                    "{} certificate {} {when} ({}){fix}",
                    c.role, c.subject, c.not_after
                )
            })
            .collect();
        if !checks.refused.is_empty() {
            alerts.push(format!(
                "new TLS material refused, Flink keeps the generation in force: {}",
                status.refused.join("; ")
            ));
        }
        status.certificates = certs;
        if !alerts.is_empty() {
            status.alert = Some(alerts.join("; "));
        }
        status
    }

    /// One line for `flink-agent status`.
    pub fn line(&self) -> String {
        if !self.enabled {
            return "tls: off".to_string();
        }
        let mut line = format!(
            "tls: {} ({}, REST client certificates {}), generation {}",
            self.mode,
            self.protocol,
            if self.rest_client_auth {
                "required"
            } else {
                "NOT required"
            },
            self.generation
        );
        if let (Some(end), Some(days)) = (&self.not_after, self.days_left) {
            let _ = write!(line, ", valid until {end} ({days} days left)");
        }
        let _ = write!(line, "; rotation: {}", self.rotation);
        if let Some(alert) = &self.alert {
            let _ = write!(line, "\n  ALERT: {alert}");
        }
        line
    }

    /// `flink-agent tls show`: every certificate in force.
    pub fn render_human(&self) -> String {
        let mut out = format!("{}\n", self.line());
        if !self.enabled {
            return out;
        }
        if let Some(r) = &self.renews_at {
            let _ = writeln!(out, "node certificate renewed at: {r}");
        }
        for c in &self.certificates {
            let _ = writeln!(
                out,
                "\n{}{}\n  subject   {}\n  issuer    {}\n  serial    {}\n  sha256    {}\n  valid     {} to {} ({} days left)",
                c.role,
                if c.alert { "  (ALERT)" } else { "" },
                c.subject,
                c.issuer,
                c.serial,
                c.sha256,
                c.not_before,
                c.not_after,
                c.days_left
            );
            if !c.names.is_empty() {
                let _ = writeln!(out, "  names     {}", c.names.join(", "));
            }
        }
        let time = |t: Option<u64>| {
            t.map_or("-".to_string(), |s| {
                format_time(UNIX_EPOCH + std::time::Duration::from_secs(s))
            })
        };
        let _ = writeln!(
            out,
            "\nlast check {}, next check {}",
            time(self.last_check),
            time(self.next_check)
        );
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;
    use crate::tls::generation::Facts;
    use crate::tls::issue::{new_ca, NodeRequest, Signer};
    use std::time::Duration;

    const DAY: Duration = Duration::from_secs(86_400);

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_780_000_000)
    }

    fn generation(lifetime_days: u64) -> (Settings, Generation) {
        let mut c = AgentConfig::default();
        c.tls.enabled = true;
        let settings = Settings::new(&c, "127.0.0.1");
        let ca = new_ca("CA", t0(), 3650 * DAY).unwrap();
        let node = Signer::from_issued(&ca)
            .unwrap()
            .issue_node(
                &NodeRequest {
                    common_name: "node-1".into(),
                    ips: vec![],
                    dns_names: vec![],
                    lifetime: lifetime_days as u32 * DAY,
                },
                t0(),
            )
            .unwrap();
        let info = |d| CertInfo::parse(d).unwrap();
        let mut g = Generation::pending(&settings.dir);
        g.id = "0a1b2c3d4e5f".into();
        g.facts = Some(Facts {
            step: "initial".into(),
            next_step: None,
            node: info(&node.chain[0]),
            trusted: vec![info(&ca.chain[0])],
            rest: None,
            rest_clients: vec![],
            agent_client: None,
        });
        (settings, g)
    }

    #[test]
    fn a_fresh_certificate_raises_no_alert_and_says_when_it_renews() {
        let (s, g) = generation(90);
        let st = TlsStatus::of(&s, Some(&g), &Checks::default(), t0() + DAY);
        assert_eq!(st.alert, None);
        assert_eq!(st.days_left, Some(89));
        assert_eq!(st.certificates.len(), 2);
        assert_eq!(st.rotation, "idle (last step: initial)");
        assert!(st
            .renews_at
            .as_deref()
            .unwrap()
            .starts_with("2026-07-27T20:25"));
        let line = st.line();
        assert!(
            line.starts_with("tls: self-signed (TLSv1.2, REST client certificates required), generation 0a1b2c3d4e5f, valid until"),
            "{line}"
        );
    }

    #[test]
    fn the_alert_starts_seven_days_or_ten_percent_before_the_end() {
        let (s, g) = generation(90);
        // 90 days: 10% = 9 days, earlier than 7.
        let at = |d: u64| TlsStatus::of(&s, Some(&g), &Checks::default(), t0() + DAY * d as u32);
        assert_eq!(at(80).alert, None);
        let alert = at(82).alert.unwrap();
        assert!(alert.starts_with("node certificate CN=node-1"), "{alert}");
        assert!(alert.contains("expires in 8 day(s)"), "{alert}");
        assert!(at(91).alert.unwrap().contains("EXPIRED"));
        let (s, g) = generation(20);
        // 20 days: 10% = 2 days; 7 days is earlier.
        let st = TlsStatus::of(&s, Some(&g), &Checks::default(), t0() + 12 * DAY);
        assert!(st.alert.is_none());
        let st = TlsStatus::of(&s, Some(&g), &Checks::default(), t0() + 14 * DAY);
        assert!(st.alert.is_some());
    }

    #[test]
    fn refused_material_is_an_alert_and_tls_off_is_one_word() {
        let (s, g) = generation(90);
        let checks = Checks {
            refused: vec![FieldError::new("tls.cert_file", "expired")],
            ..Checks::default()
        };
        let st = TlsStatus::of(&s, Some(&g), &checks, t0());
        assert!(st
            .alert
            .unwrap()
            .contains("refused, Flink keeps the generation in force: tls.cert_file: expired"));
        let off = TlsStatus::default();
        assert_eq!(off.line(), "tls: off");
    }
}
