//! Progress while a long request runs (`jobs deploy|stop|start`): on a terminal a spinner with
//! the phase and the time so far on stderr, redrawn in place; otherwise plain lines, one at the
//! start and one every 15 s, so a log shows the command is alive. The phase comes from the
//! agent's own status when it reports one (a restore's download).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const PLAIN_EVERY: Duration = Duration::from_secs(15);

/// A running progress display; dropping it clears the spinner line.
pub struct Progress {
    done: Arc<AtomicBool>,
    detail: Arc<Mutex<Option<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Shows `what` (e.g. `stopping counter: taking a savepoint`) until dropped.
    pub fn start(what: String) -> Progress {
        let done = Arc::new(AtomicBool::new(false));
        let detail = Arc::new(Mutex::new(None::<String>));
        let tty = std::io::stderr().is_terminal();
        let (d, det) = (done.clone(), detail.clone());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut last_plain = None::<Instant>;
            let mut frame = 0;
            while !d.load(Ordering::Relaxed) {
                let extra = det
                    .lock()
                    .map(|x| x.clone())
                    .unwrap_or_default()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default();
                let secs = started.elapsed().as_secs();
                let mut err = std::io::stderr().lock();
                if tty {
                    let _ = write!(err, "\r\x1b[2K{} {what}{extra} {secs}s", FRAMES[frame % 10]);
                    let _ = err.flush();
                    frame += 1;
                } else if last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
                    let _ = writeln!(err, "{what}{extra}... {secs}s");
                    last_plain = Some(Instant::now());
                }
                drop(err);
                std::thread::sleep(Duration::from_millis(100));
            }
            if tty {
                let _ = write!(std::io::stderr(), "\r\x1b[2K");
            }
        });
        Progress {
            done,
            detail,
            thread: Some(thread),
        }
    }

    /// What the agent says it is doing now (None: nothing beyond the request itself).
    pub fn detail(&self, detail: Option<String>) {
        if let Ok(mut d) = self.detail.lock() {
            *d = detail;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
