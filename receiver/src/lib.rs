//! The Sextant hub: the OTLP receiver, the hub store and the read API.

pub mod store;
