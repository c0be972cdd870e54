//! Hub.
