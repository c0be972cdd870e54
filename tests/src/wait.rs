//! Waiting for a condition a test cannot be notified of: another process,
//! a socket, a file, Docker, a row another task writes.
//!
//! [`until`] polls a check every `every` and returns the check's value as
//! soon as it has one; after `within` it panics with the check's last
//! description of what it saw, so a stuck test says what was stuck and in
//! which state. [`poll`] is the same loop for the callers that decide
//! themselves what a timeout means; [`until_blocking`] and [`poll_blocking`]
//! are the two for code on a plain thread.
//!
//! [`until`] and [`poll`] measure `within` on tokio's clock: the wall clock,
//! or, in a test on paused time (`#[tokio::test(start_paused = true)]`),
//! the paused clock, so a test that runs the code under test's timers on
//! paused time can still wait for that code's effects. Don't poll another
//! process on paused time: its progress is not measured by that clock.
//! A timer inside the code under test is not something to poll with real
//! waits: run that test on paused time instead.
//!
//! The check is an `FnMut` returning a future, so it can borrow the test's
//! state; write it as `|| async { … }` and, when the future needs values the
//! closure captured by reference, as `|| async move { … }` over references
//! taken outside:
//!
//! ```no_run
//! # async fn demo(client: reqwest::Client, id: u64) {
//! use std::time::Duration;
//! let client = &client;
//! let state: String = sextant_e2e::wait::until(
//!     Duration::from_secs(30),
//!     Duration::from_millis(100),
//!     || async move {
//!         let state = client
//!             .get(format!("http://127.0.0.1:1/jobs/{id}"))
//!             .send()
//!             .await
//!             .map_err(|e| format!("job {id}: {e}"))?
//!             .text()
//!             .await
//!             .unwrap_or_default();
//!         if state == "succeeded" {
//!             Ok(state)
//!         } else {
//!             Err(format!("job {id} did not finish: {state}"))
//!         }
//!     },
//! )
//! .await;
//! # }
//! ```

use std::fmt::Display;
use std::future::Future;
use std::panic::Location;
use std::time::{Duration, Instant};

/// Polls `check` every `every` until it returns `Ok`, and returns that
/// value; panics after `within` with the last `Err` description (and the
/// caller's location). The check runs at least once, and the wait gives up
/// only after a check that ended past the deadline.
#[track_caller]
pub fn until<T, E, F, Fut>(within: Duration, every: Duration, check: F) -> impl Future<Output = T>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let at = Location::caller();
    async move {
        match poll(within, every, check).await {
            Ok(value) => value,
            Err(last) => panic!("gave up waiting after {within:?} (at {at}): {last}"),
        }
    }
}

/// Polls `check` every `every` until it returns `Ok` (that value) or
/// `within` has passed (the last `Err`). For waits whose timeout is an
/// answer, not a failure.
pub async fn poll<T, E, F, Fut>(within: Duration, every: Duration, mut check: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = match check().await {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(every).await;
    }
}

/// [`until`] for a plain thread (no runtime): the thread waits between
/// checks.
#[track_caller]
pub fn until_blocking<T, E: Display>(
    within: Duration,
    every: Duration,
    check: impl FnMut() -> Result<T, E>,
) -> T {
    match poll_blocking(within, every, check) {
        Ok(value) => value,
        Err(last) => panic!(
            "gave up waiting after {within:?} (at {}): {last}",
            Location::caller()
        ),
    }
}

/// [`poll`] for a plain thread (no runtime).
pub fn poll_blocking<T, E>(
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + within;
    loop {
        let last = match check() {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_value_found() {
        let mut calls = 0;
        let calls = &mut calls;
        let got = until(Duration::from_secs(5), Duration::from_millis(1), || {
            *calls += 1;
            let n = *calls;
            async move { if n >= 3 { Ok(n) } else { Err(format!("n={n}")) } }
        })
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn poll_hands_back_the_last_description() {
        let got: Result<(), String> = poll(Duration::ZERO, Duration::from_millis(1), || async {
            Err("still starting".to_string())
        })
        .await;
        assert_eq!(got, Err("still starting".to_string()));
    }

    #[tokio::test]
    #[should_panic(expected = "job 7 did not finish: running")]
    async fn panics_with_the_last_description() {
        until(
            Duration::from_millis(20),
            Duration::from_millis(5),
            || async { Err::<(), _>("job 7 did not finish: running") },
        )
        .await;
    }

    #[test]
    fn blocking_returns_the_value() {
        let mut n = 0;
        let got = until_blocking(Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            if n == 2 { Ok(n) } else { Err("once more") }
        });
        assert_eq!(got, 2);
    }
}
