//! The module registry: manifests and their dry run.

mod catalog;
mod instances;
mod lifecycle;
mod manifests;
