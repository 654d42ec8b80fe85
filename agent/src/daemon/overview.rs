//! Keeps Flink's `/overview` figures fresh for `status` without making requests wait on Flink.
//! Refreshes at once when readiness changes, so `status` never says "ready" next to figures
//! from before the TaskManager registered, and follows the endpoint when a reload moves it.

use crate::flinkrest::{Endpoint, FlinkOverview, FlinkRest};
use std::time::Duration;
use tokio::sync::watch;

pub(super) fn spawn(
    mut endpoint: watch::Receiver<Endpoint>,
    mut ready: watch::Receiver<bool>,
) -> watch::Receiver<Option<FlinkOverview>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut client = None;
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut ready_alive = true;
        let mut endpoint_alive = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = ready.changed(), if ready_alive => ready_alive = changed.is_ok(),
                changed = endpoint.changed(), if endpoint_alive => {
                    endpoint_alive = changed.is_ok();
                    client = None;
                }
            }
            if tx.is_closed() {
                return;
            }
            if client.is_none() {
                let at = endpoint.borrow_and_update().clone();
                client = FlinkRest::new(&at)
                    .inspect_err(|e| log::error!("{e}; status will lack Flink's figures"))
                    .ok();
            }
            let figures = match &client {
                Some(c) => c.overview().await.ok(),
                None => None,
            };
            tx.send_replace(figures);
        }
    });
    rx
}
