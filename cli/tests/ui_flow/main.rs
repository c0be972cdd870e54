//! The orchestrator's flow in the hub's UI (issue 21, docs/ui-flow.md), with
//! a real hub, orchestrator and dry-run agents in process (`stack.rs`).
//!
//! - `browser.rs`: headless Chromium through chromedriver, on both
//!   backends: a person promotes a release dev → stage, a second person
//!   approves it into prod from the inbox, the job page follows the tasks
//!   to done, a failing release is rolled back from its job page, an agent
//!   is revoked; each step checked against the orchestrator's API, every
//!   page screenshotted to `target/ui-screenshots/` and checked for
//!   requests outside the hub.
//! - `pages.rs`: the pages over plain HTTP: what a read-only person sees,
//!   the CSRF check, the API's refusals in words, sign-in with a token only
//!   the orchestrator knows, a hub without an orchestrator.

#![allow(clippy::unwrap_used)]

mod browser;
mod pages;
mod stack;
