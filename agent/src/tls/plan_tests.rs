//! Every branch of the plan, with fixed times.

#![allow(clippy::unwrap_used)]

use super::*;
use std::time::UNIX_EPOCH;

const DAY: Duration = Duration::from_secs(86_400);

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn day(n: f64) -> SystemTime {
    t0() + Duration::from_secs_f64(n * 86_400.0)
}

fn fp(s: &str) -> Fingerprint {
    Fingerprint(s.to_string())
}

fn window(days: u64) -> Window {
    Window {
        not_before: t0(),
        not_after: t0() + DAY * days as u32,
    }
}

fn leaf(name: &str, ca: &str) -> LeafState {
    LeafState {
        fingerprint: fp(name),
        issuer: fp(ca),
        window: window(90),
    }
}

fn set(cas: &[&str]) -> BTreeSet<Fingerprint> {
    cas.iter().map(|c| fp(c)).collect()
}

fn in_force(leaf_name: &str, ca: &str, trusted: &[&str]) -> InForce {
    InForce {
        leaf: leaf(leaf_name, ca),
        trusted: set(trusted),
    }
}

fn issuer(ca: &str) -> Desired {
    Desired::Issuer { ca: fp(ca) }
}

fn files(leaf_name: &str, ca: &str, trusted: &[&str]) -> Desired {
    Desired::Files {
        leaf: leaf(leaf_name, ca),
        trusted: set(trusted),
    }
}

// --- windows and alerts -------------------------------------------------------------------------

#[test]
fn renewal_is_at_two_thirds_of_the_lifetime() {
    assert_eq!(window(90).renew_at(), day(60.0));
    assert_eq!(window(30).renew_at(), day(20.0));
}

#[test]
fn the_deadline_is_ninety_percent_or_a_week_before_expiry_whichever_is_earlier() {
    // 90 days: 90% = day 81, a week before = day 83.
    assert_eq!(window(90).deadline(), day(81.0));
    // 30 days: 90% = day 27, a week before = day 23.
    assert_eq!(window(30).deadline(), day(23.0));
}

#[test]
fn a_long_certificate_alerts_at_ten_percent_of_its_lifetime() {
    let w = window(90); // 10% = 9 days > 7 days
    assert_eq!(w.alert_from(), day(81.0));
    let before = expiry(&w, day(80.9));
    assert_eq!((before.days_left, before.alert), (9, false));
    let at = expiry(&w, day(81.0));
    assert_eq!((at.days_left, at.alert), (9, true));
}

#[test]
fn a_short_certificate_alerts_a_week_before_expiry() {
    let w = window(30); // 10% = 3 days < 7 days
    assert_eq!(w.alert_from(), day(23.0));
    assert!(!expiry(&w, day(22.9)).alert);
    assert!(expiry(&w, day(23.0)).alert);
}

#[test]
fn an_expired_certificate_alerts_with_negative_days() {
    let e = expiry(&window(90), day(92.5));
    assert_eq!((e.days_left, e.alert), (-3, true));
}

#[test]
fn every_decision_carries_the_leaf_expiry() {
    let d = decide(&in_force("L1", "A", &["A"]), &issuer("A"), day(85.0));
    assert_eq!(d.expiry.days_left, 5);
    assert!(d.expiry.alert);
}

// --- ca and self-signed modes -------------------------------------------------------------------

#[test]
fn issuer_mode_does_nothing_before_two_thirds_of_the_lifetime() {
    let d = decide(&in_force("L1", "A", &["A"]), &issuer("A"), day(59.9));
    assert_eq!(d.step, Step::Nothing);
    assert_eq!(d.restart, Restart::None);
    assert_eq!(d.trusted, set(&["A"]));
}

#[test]
fn issuer_mode_renews_at_two_thirds_and_must_restart_by_the_deadline() {
    let d = decide(&in_force("L1", "A", &["A"]), &issuer("A"), day(60.0));
    assert_eq!(d.step, Step::RenewLeaf);
    assert_eq!(d.restart, Restart::By(day(81.0)));
    assert_eq!(d.trusted, set(&["A"]));
    assert!(!d.expiry.alert);
}

#[test]
fn issuer_mode_rotates_a_ca_in_three_steps() {
    // 1: the new CA B is trusted next to A; the keystore in force stays.
    let mut f = in_force("L1", "A", &["A"]);
    let d = decide(&f, &issuer("B"), day(10.0));
    assert_eq!((&d.step, d.restart), (&Step::TrustNewCa, Restart::Soon));
    assert_eq!(d.trusted, set(&["A", "B"]));
    f.trusted = d.trusted;

    // 2: a leaf under B, trust unchanged.
    let d = decide(&f, &issuer("B"), day(11.0));
    assert_eq!((&d.step, d.restart), (&Step::LeafUnderNewCa, Restart::Soon));
    assert_eq!(d.trusted, set(&["A", "B"]));
    f.leaf = LeafState {
        fingerprint: fp("L2"),
        issuer: fp("B"),
        window: Window {
            not_before: day(11.0),
            not_after: day(101.0),
        },
    };

    // 3: A is dropped, at the next natural restart.
    let d = decide(&f, &issuer("B"), day(12.0));
    assert_eq!(
        (&d.step, d.restart),
        (&Step::DropOldCa, Restart::NextNatural)
    );
    assert_eq!(d.trusted, set(&["B"]));
    f.trusted = d.trusted;

    assert_eq!(decide(&f, &issuer("B"), day(13.0)).step, Step::Nothing);
}

#[test]
fn issuer_mode_drops_a_pending_old_ca_with_a_due_renewal() {
    let d = decide(&in_force("L1", "B", &["A", "B"]), &issuer("B"), day(70.0));
    assert_eq!(d.step, Step::RenewLeaf);
    assert_eq!(d.trusted, set(&["B"]));
    assert_eq!(d.restart, Restart::By(day(81.0)));
}

#[test]
fn issuer_mode_renews_an_already_expired_leaf_with_a_past_deadline() {
    let d = decide(&in_force("L1", "A", &["A"]), &issuer("A"), day(95.0));
    assert_eq!(d.step, Step::RenewLeaf);
    assert!(matches!(d.restart, Restart::By(t) if t < day(95.0)));
    assert!(d.expiry.alert);
}

// --- files mode ---------------------------------------------------------------------------------

#[test]
fn files_mode_does_nothing_when_the_disk_holds_what_is_in_force() {
    let d = decide(
        &in_force("L1", "A", &["A"]),
        &files("L1", "A", &["A"]),
        day(70.0),
    );
    assert_eq!((d.step, d.restart), (Step::Nothing, Restart::None));
}

#[test]
fn files_mode_never_renews_by_itself_but_still_alerts() {
    let d = decide(
        &in_force("L1", "A", &["A"]),
        &files("L1", "A", &["A"]),
        day(82.0),
    );
    assert_eq!(d.step, Step::Nothing);
    assert!(d.expiry.alert);
}

#[test]
fn files_mode_applies_a_new_leaf_of_the_same_ca_by_the_old_one_s_deadline() {
    let d = decide(
        &in_force("L1", "A", &["A"]),
        &files("L2", "A", &["A"]),
        day(61.0),
    );
    assert_eq!(d.step, Step::ApplyNewLeaf);
    assert_eq!(d.restart, Restart::By(day(81.0)));
    assert_eq!(d.trusted, set(&["A"]));
}

#[test]
fn files_mode_follows_a_ca_rotation_delivered_in_three_steps() {
    let mut f = in_force("L1", "A", &["A"]);
    let d = decide(&f, &files("L1", "A", &["A", "B"]), day(1.0));
    assert_eq!((&d.step, d.restart), (&Step::TrustNewCa, Restart::Soon));
    assert_eq!(d.trusted, set(&["A", "B"]));
    f.trusted = d.trusted;

    let d = decide(&f, &files("L2", "B", &["A", "B"]), day(2.0));
    assert_eq!((&d.step, d.restart), (&Step::LeafUnderNewCa, Restart::Soon));
    f.leaf = leaf("L2", "B");

    let d = decide(&f, &files("L2", "B", &["B"]), day(3.0));
    assert_eq!(
        (&d.step, d.restart),
        (&Step::DropOldCa, Restart::NextNatural)
    );
    assert_eq!(d.trusted, set(&["B"]));
}

#[test]
fn files_mode_applies_trust_before_a_leaf_delivered_with_it() {
    let d = decide(
        &in_force("L1", "A", &["A"]),
        &files("L2", "B", &["A", "B"]),
        day(1.0),
    );
    assert_eq!(d.step, Step::TrustNewCa);
    assert_eq!(d.trusted, set(&["A", "B"]));
}

#[test]
fn files_mode_refuses_a_bundle_that_drops_the_ca_of_the_leaf_in_force() {
    let d = decide(
        &in_force("L1", "A", &["A"]),
        &files("L2", "B", &["B"]),
        day(1.0),
    );
    assert_eq!(
        d.step,
        Step::Refuse(Refusal::TrustDropsLeafInForce { issuer: fp("A") })
    );
    assert_eq!(d.restart, Restart::None);
    assert_eq!(d.trusted, set(&["A"]));
    let Step::Refuse(r) = d.step else {
        unreachable!()
    };
    assert!(r.to_string().contains("three steps"), "{r}");
}

#[test]
fn files_mode_refuses_a_leaf_from_a_ca_not_yet_trusted() {
    let d = decide(
        &in_force("L1", "A", &["A"]),
        &files("L2", "C", &["A"]),
        day(1.0),
    );
    assert_eq!(
        d.step,
        Step::Refuse(Refusal::LeafNotYetTrusted { issuer: fp("C") })
    );
    assert_eq!(d.restart, Restart::None);
}
