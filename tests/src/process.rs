//! A helper process (sipp, baresip, dnsmasq) that lives no longer than the test that started it.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Kills and reaps the process when dropped.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Waits up to `within` for the process to exit by itself: its status, or `None` if it is still
    /// running.
    pub async fn exited(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().expect("the process can be waited for") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process now and reaps it.
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}
