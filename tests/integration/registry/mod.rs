//! The module registry: manifests and their dry run.

mod catalog;
mod lifecycle;
mod manifests;
