//! The agent's link to the Docker engine, which may come up after the
//! agent or go away for a while: the agent serves its health (not ready)
//! and sends what its outbox holds meanwhile.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bollard::Docker;
use tokio_util::sync::CancellationToken;

/// The agent's Docker client, once the engine has answered.
#[derive(Default)]
pub(super) struct DockerLink {
    pub(super) docker: OnceLock<Docker>,
    /// Why the engine could not be reached yet (the last attempt).
    pub(super) error: Mutex<Option<Arc<bollard::errors::Error>>>,
}

impl DockerLink {
    /// Connects and agrees on an API version, retrying with backoff (up to
    /// 5 s apart) until it works; `None` when cancelled first.
    pub(super) async fn connect(
        &self,
        docker_host: Option<&str>,
        cancel: &CancellationToken,
    ) -> Option<Docker> {
        let mut backoff = Duration::from_millis(200);
        let mut last = String::new();
        loop {
            match crate::executor::connect_docker(docker_host).await {
                Ok(docker) => {
                    tracing::info!("connected to the Docker engine");
                    return Some(self.docker.get_or_init(|| docker).clone());
                }
                Err(e) => {
                    // Logged once per distinct error, not at every retry.
                    let text = e.to_string();
                    if text != last {
                        tracing::warn!(error = %text, "Docker engine unreachable; retrying");
                    }
                    *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(e));
                    last = text;
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return None,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
