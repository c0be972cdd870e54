//! The Sextant agent.
