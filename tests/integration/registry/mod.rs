//! The module registry: manifests, the catalog and its lifecycle, instances
//! on leases, and their health probes.

mod catalog;
mod instances;
mod lifecycle;
mod manifests;
mod probing;
