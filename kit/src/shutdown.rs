//! The one way Sextant's services stop: in stages, each under a deadline.
//!
//! A service groups its components into [`Stage`]s (what accepts work, what
//! does the work, what delivers the results) and, when asked to stop,
//! cancels them one after the other, waiting up to a deadline for each
//! before it aborts what is left and goes on. mini-redis's shutdown is the
//! model: a token says "stop", and the service waits for its parts to say
//! "stopped".
//!
//! Each stage has a token of its own, not a child of the service's
//! `shutdown` token: a child fires with its parent, and every stage would
//! stop at once. The components of a stage take [`Stage::token`]'s child
//! tokens, so one component can stop early without stopping its siblings.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use sextant_kit::shutdown::{Stage, Stopped};
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("{0}")]
//! struct Failed(Stopped);
//! impl From<Stopped> for Failed {
//!     fn from(s: Stopped) -> Self { Failed(s) }
//! }
//!
//! let mut serving: Stage<Failed> = Stage::new("listeners");
//! let token = serving.child_token();
//! serving.spawn(async move { token.cancelled().await; Ok(()) });
//! let mut result = Ok(());
//! serving.stop(Duration::from_secs(1), &mut result).await;
//! assert!(result.is_ok());
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A component that ended without returning its own error: it panicked or
/// was aborted. Each service's error type converts it.
#[derive(Debug, thiserror::Error)]
#[error("the {stage} stage's task {how}")]
pub struct Stopped {
    /// The stage the component belonged to.
    pub stage: &'static str,
    /// `panicked` or `was cancelled`.
    how: &'static str,
    #[source]
    source: tokio::task::JoinError,
}

impl Stopped {
    /// How `stage`'s task ended, from its join error.
    pub fn new(stage: &'static str, source: tokio::task::JoinError) -> Self {
        let how = if source.is_panic() {
            "panicked"
        } else {
            "was cancelled"
        };
        Self { stage, how, source }
    }
}

/// The components that stop together: one token, one set of tasks.
#[derive(Debug)]
pub struct Stage<E> {
    name: &'static str,
    token: CancellationToken,
    tasks: JoinSet<Result<(), E>>,
}

impl<E: From<Stopped> + std::fmt::Display + Send + 'static> Stage<E> {
    /// An empty stage named `name` (in logs).
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            token: CancellationToken::new(),
            tasks: JoinSet::new(),
        }
    }

    /// A token for one component: cancelled when the stage stops.
    pub fn child_token(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// Runs `component` as part of this stage.
    pub fn spawn(&mut self, component: impl Future<Output = Result<(), E>> + Send + 'static) {
        self.tasks.spawn(component);
    }

    /// Whether the stage has no component left.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Waits for the next component to end, on its own, and returns how it
    /// ended: pending forever when none is left, so that a `select!` over
    /// several stages and the shutdown token waits for the first of them.
    pub async fn ended(&mut self) -> Result<(), E> {
        match self.tasks.join_next().await {
            Some(done) => self.outcome(done),
            None => std::future::pending().await,
        }
    }

    /// Cancels the stage and waits up to `deadline` for its components to
    /// end, keeping the first error in `result`; what is left then is
    /// aborted.
    pub async fn stop(&mut self, deadline: Duration, result: &mut Result<(), E>) {
        self.stop_by(Instant::now() + deadline, result).await;
    }

    /// [`Stage::stop`] with the deadline as an instant, for stages that
    /// share one.
    pub async fn stop_by(&mut self, deadline: Instant, result: &mut Result<(), E>) {
        self.token.cancel();
        let ended = tokio::time::timeout_at(deadline, async {
            while let Some(done) = self.tasks.join_next().await {
                if let Err(error) = self.outcome(done) {
                    tracing::error!(stage = self.name, %error, "A component failed while stopping");
                    if result.is_ok() {
                        *result = Err(error);
                    }
                }
            }
        })
        .await;
        if ended.is_err() {
            tracing::warn!(
                stage = self.name,
                "Shutdown stage ran past its deadline; aborting it"
            );
            self.tasks.shutdown().await;
        }
    }

    fn outcome(&self, done: Result<Result<(), E>, tokio::task::JoinError>) -> Result<(), E> {
        match done {
            Ok(outcome) => outcome,
            Err(join) => Err(Stopped::new(self.name, join).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Failed {
        #[error("failed: {0}")]
        Own(&'static str),
        #[error(transparent)]
        Stopped(#[from] Stopped),
    }

    #[tokio::test(start_paused = true)]
    async fn a_stage_stops_its_components_and_keeps_the_first_error() {
        let mut stage: Stage<Failed> = Stage::new("work");
        for name in ["first", "second"] {
            let token = stage.child_token();
            stage.spawn(async move {
                token.cancelled().await;
                Err(Failed::Own(name))
            });
        }
        let mut result = Ok(());
        stage.stop(Duration::from_secs(5), &mut result).await;
        assert!(matches!(result, Err(Failed::Own(_))), "{result:?}");
        assert!(stage.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_component_past_the_deadline_is_aborted() {
        let mut stage: Stage<Failed> = Stage::new("stubborn");
        stage.spawn(async {
            // Ignores its token.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        });
        let started = Instant::now();
        let mut result = Ok(());
        stage.stop(Duration::from_secs(2), &mut result).await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert!(result.is_ok(), "an aborted component is not an error");
        assert!(stage.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn stages_stop_in_the_order_they_are_told() {
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut first: Stage<Failed> = Stage::new("first");
        let mut second: Stage<Failed> = Stage::new("second");
        for (stage, name) in [(&mut first, "first"), (&mut second, "second")] {
            let (token, order) = (stage.child_token(), order.clone());
            stage.spawn(async move {
                token.cancelled().await;
                order.lock().expect("order").push(name);
                Ok(())
            });
        }
        let mut result = Ok(());
        first.stop(Duration::from_secs(1), &mut result).await;
        assert_eq!(*order.lock().expect("order"), ["first"]);
        second.stop(Duration::from_secs(1), &mut result).await;
        assert_eq!(*order.lock().expect("order"), ["first", "second"]);
    }

    #[tokio::test(start_paused = true)]
    async fn ended_reports_a_component_that_stopped_on_its_own() {
        let mut stage: Stage<Failed> = Stage::new("listeners");
        stage.spawn(async { Err(Failed::Own("bind lost")) });
        let waiting = stage.child_token();
        stage.spawn(async move {
            waiting.cancelled().await;
            Ok(())
        });
        assert!(matches!(stage.ended().await, Err(Failed::Own("bind lost"))));
        stage.spawn(async { panic!("boom") });
        let panicked = stage.ended().await;
        assert!(
            matches!(&panicked, Err(Failed::Stopped(s)) if s.stage == "listeners"),
            "{panicked:?}"
        );
        let mut result = Ok(());
        stage.stop(Duration::from_secs(1), &mut result).await;
        assert!(result.is_ok());
    }
}
