//! The observer: watches the Docker engine's event stream for containers
//! that carry Sextant labels, resyncs the full list periodically, and hands
//! every change — and every container again at the heartbeat interval — to
//! a [`Sink`] (the durable outbox, in the agent).

mod otlp;
mod status;
mod tracker;

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerInspectResponse, EventMessageTypeEnum, ImageInspect};
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use futures::StreamExt;
use sextant_protocol::deploy::labels;
use tokio_util::sync::CancellationToken;

pub use otlp::{
    Identity, LABEL_PREFIX, RECONCILER_NAME, RECONCILER_TYPE, record, resource, resource_logs,
};
pub use status::{Observation, Placement, observe, placement, revision, status};
pub use tracker::{Report, ReportKind, Tracker};

/// Container events that can change what is reported. Health-check probes
/// raise `exec_*` events every interval on every container with a check;
/// re-inspecting on those cost more CPU than everything else together
/// (docs/performance.md, "Agent footprint"). `health_status` matches
/// `health_status: healthy` and the other results.
const STATE_EVENTS: [&str; 12] = [
    "create",
    "start",
    "die",
    "stop",
    "kill",
    "oom",
    "pause",
    "unpause",
    "restart",
    "rename",
    "destroy",
    "health_status",
];

/// Where reports go. Appending must be quick and durable (the outbox writes
/// to disk before anything is sent).
pub trait Sink: Send + Sync {
    /// Why reports could not be recorded; the observer logs it and goes on.
    type Error: std::error::Error + Send + Sync + 'static;

    fn report(&self, reports: &[Report]) -> Result<(), Self::Error>;

    /// How many labelled containers the engine has, after each change.
    fn observed(&self, _containers: usize) {}
}

/// Timing of the observer.
#[derive(Debug, Clone)]
pub struct ObserverConfig {
    /// Every container is reported again at this interval.
    pub heartbeat: Duration,
    /// The full container list is read again at this interval, in case an
    /// event was missed.
    pub resync: Duration,
    /// Only containers with these labels too (`key` or `key=value`).
    pub watch_labels: Vec<String>,
}

impl Default for ObserverConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(30),
            resync: Duration::from_secs(300),
            watch_labels: Vec::new(),
        }
    }
}

/// Watches one Docker engine for one agent identity.
pub struct Observer<S> {
    docker: Docker,
    environment: String,
    config: ObserverConfig,
    sink: S,
    tracker: Tracker,
    /// Image inspections by image id; `None` means the image is missing.
    images: HashMap<String, Option<ImageInspect>>,
}

impl<S: Sink> Observer<S> {
    pub fn new(
        docker: Docker,
        environment: impl Into<String>,
        config: ObserverConfig,
        sink: S,
    ) -> Self {
        Self {
            docker,
            environment: environment.into(),
            config,
            sink,
            tracker: Tracker::default(),
            images: HashMap::new(),
        }
    }

    /// Labelled containers the engine has now.
    pub fn containers(&self) -> usize {
        self.tracker.containers()
    }

    /// Runs until `cancel`: subscribes to container events, lists every
    /// labelled container, then follows events, heartbeats and resyncs. A
    /// broken event stream is reopened (after a resync) with backoff.
    pub async fn run(&mut self, cancel: CancellationToken) {
        let mut heartbeat = tokio::time::interval(self.config.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        let mut resync = tokio::time::interval(self.config.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        let mut backoff = Duration::from_millis(200);
        loop {
            // Subscribe first, then list: nothing between the two is missed.
            let filters = HashMap::from([
                ("type".to_owned(), vec!["container".to_owned()]),
                ("label".to_owned(), self.label_filter()),
                (
                    "event".to_owned(),
                    STATE_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
                ),
            ]);
            let mut events = self
                .docker
                .events(Some(EventsOptionsBuilder::new().filters(&filters).build()));
            if let Err(e) = self.resync().await {
                tracing::warn!(error = %e, "cannot list containers; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    event = events.next() => match event {
                        Some(Ok(event)) => {
                            backoff = Duration::from_millis(200);
                            let id = event.actor.and_then(|a| a.id);
                            if let (Some(EventMessageTypeEnum::CONTAINER), Some(id)) = (event.typ, id) {
                                self.container_changed(&id).await;
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "Docker event stream failed; reopening");
                            break;
                        }
                        None => {
                            tracing::warn!("Docker event stream ended; reopening");
                            break;
                        }
                    },
                    _ = heartbeat.tick() => self.send(self.tracker.heartbeat()),
                    _ = resync.tick() => {
                        if let Err(e) = self.resync().await {
                            tracing::warn!(error = %e, "resync failed");
                        }
                    }
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// Docker's `label` filter: the workload label, and any watch labels.
    fn label_filter(&self) -> Vec<String> {
        let mut labels = vec![labels::WORKLOAD.to_owned()];
        labels.extend(self.config.watch_labels.iter().cloned());
        labels
    }

    /// Reads every labelled container again and reports what changed.
    pub async fn resync(&mut self) -> Result<(), DockerError> {
        let filters = HashMap::from([("label".to_owned(), self.label_filter())]);
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await?;
        self.images.clear();
        let mut found = Vec::new();
        for summary in list {
            let Some(id) = summary.id else { continue };
            match self.inspect(&id).await {
                Ok(Some(entry)) => found.push(entry),
                Ok(None) => {}
                Err(e) => tracing::warn!(container = %id, error = %e, "cannot inspect container"),
            }
        }
        self.tracker.replace_all(found);
        let changes = self.tracker.reconcile();
        self.send(changes);
        Ok(())
    }

    /// An event named container `id`: inspect it again.
    async fn container_changed(&mut self, id: &str) {
        match self.inspect(id).await {
            Ok(Some((created, observation))) => self.tracker.upsert(created, observation),
            Ok(None) => self.tracker.remove(id),
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "cannot inspect container");
                return;
            }
        }
        let changes = self.tracker.reconcile();
        self.send(changes);
    }

    /// Inspects a container and its image; `None` when it is gone or carries
    /// no placement labels.
    async fn inspect(&mut self, id: &str) -> Result<Option<(i128, Observation)>, DockerError> {
        let inspect = match self.docker.inspect_container(id, None).await {
            Ok(i) => i,
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let image = self.image(&inspect).await?;
        let created = created_nanos(&inspect);
        Ok(observe(&inspect, image.as_ref(), &self.environment).map(|o| (created, o)))
    }

    async fn image(
        &mut self,
        inspect: &ContainerInspectResponse,
    ) -> Result<Option<ImageInspect>, DockerError> {
        let Some(id) = inspect.image.clone() else {
            return Ok(None);
        };
        if let Some(cached) = self.images.get(&id) {
            return Ok(cached.clone());
        }
        let image = match self.docker.inspect_image(&id).await {
            Ok(i) => Some(i),
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => None,
            Err(e) => return Err(e),
        };
        self.images.insert(id, image.clone());
        Ok(image)
    }

    fn send(&self, reports: Vec<Report>) {
        self.sink.observed(self.tracker.containers());
        if reports.is_empty() {
            return;
        }
        for r in &reports {
            if r.kind == ReportKind::Change {
                tracing::info!(
                    container = %r.observation.name,
                    workload = %r.observation.placement.workload,
                    target = %r.observation.placement.target,
                    revision = %r.observation.revision,
                    status = r.observation.status.as_str(),
                    detail = r.observation.message.as_deref().unwrap_or(""),
                    "container state changed"
                );
            }
        }
        if let Err(e) = self.sink.report(&reports) {
            tracing::error!(error = %e, reports = reports.len(), "cannot record observations");
        }
    }
}

/// The container's creation time in nanoseconds, 0 when unreadable.
fn created_nanos(inspect: &ContainerInspectResponse) -> i128 {
    inspect
        .created
        .as_deref()
        .and_then(|c| {
            time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or(0, time::OffsetDateTime::unix_timestamp_nanos)
}
