//! Discovery, answered from per-module views of the store. A view serves
//! while the feed has read no change to the module's instances since it
//! was loaded, and for at most [`VIEW_LIFETIME`], so the lease ends it
//! filters on trail the renewals (written each second) by about as much.
//! Each view keeps its instances encoded as they go out, once: building
//! and encoding an answer's messages per call costs more than the rest of
//! the call together.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use plinth_platform::{
    clock,
    error::ApiError,
    identity::Principal,
    store::instances::{InstanceRecord, InstanceStatus},
};

use crate::{
    catalog::{self, Catalog},
    feed::Feed,
};

const VIEW_LIFETIME: Duration = Duration::from_secs(1);
/// Views kept at most (one per module discovered); all are dropped when
/// the limit is reached.
const MAX_VIEWS: usize = 10_000;

/// What discovery looks for (already validated).
#[derive(Debug, Clone)]
pub struct Discovery {
    pub module_id: String,
    pub version_requirement: Option<semver::VersionReq>,
    pub statuses: Vec<InstanceStatus>,
    pub labels: BTreeMap<String, String>,
}

/// How an answer carries an instance.
pub type Encode = fn(&InstanceRecord) -> Bytes;

pub struct Directory {
    catalog: Arc<Catalog>,
    feed: Arc<Feed>,
    encode: Encode,
    views: RwLock<HashMap<String, Arc<ModuleView>>>,
}

/// A module's live instances as read at `loaded_at`, when the feed's
/// latest change to them was `revision`.
struct ModuleView {
    revision: i64,
    loaded_at: Instant,
    instances: Vec<Listed>,
}

/// An instance of a view, with its encoding.
struct Listed {
    record: InstanceRecord,
    encoded: Bytes,
}

impl Directory {
    pub fn new(catalog: Arc<Catalog>, feed: Arc<Feed>, encode: Encode) -> Directory {
        Directory {
            catalog,
            feed,
            encode,
            views: RwLock::default(),
        }
    }

    /// The encodings of the module's instances whose lease runs, as
    /// `discovery` asks; NOT_FOUND when the module is not registered (or
    /// deleted).
    pub async fn discover(
        &self,
        principal: &Principal,
        discovery: Discovery,
    ) -> Result<Vec<Bytes>, ApiError> {
        catalog::authenticated(principal)?;
        let view = self.view(&discovery.module_id).await?;
        let now = clock::now();
        Ok(view
            .instances
            .iter()
            .map(|listed| (&listed.record, &listed.encoded))
            .filter(|(instance, _)| instance.lease_expires_at > now)
            .filter(|(instance, _)| discovery.statuses.contains(&instance.status))
            .filter(|(instance, _)| {
                discovery
                    .version_requirement
                    .as_ref()
                    .is_none_or(|requirement| {
                        semver::Version::parse(&instance.version)
                            .is_ok_and(|version| requirement.matches(&version))
                    })
            })
            .filter(|(instance, _)| {
                discovery
                    .labels
                    .iter()
                    .all(|(key, value)| instance.labels.get(key) == Some(value))
            })
            .map(|(_, encoded)| encoded.clone())
            .collect())
    }

    async fn view(&self, module_id: &str) -> Result<Arc<ModuleView>, ApiError> {
        let revision = self.feed.module_revision(module_id);
        if let Some(revision) = revision {
            let views = self
                .views
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(view) = views.get(module_id).filter(|view| {
                view.revision == revision && view.loaded_at.elapsed() < VIEW_LIFETIME
            }) {
                return Ok(view.clone());
            }
        }
        self.catalog.current(module_id).await?;
        let loaded_at = Instant::now();
        let instances = self
            .feed
            .store()
            .instances
            .live_instances_of(module_id, clock::now())
            .await?
            .into_iter()
            .map(|record| Listed {
                encoded: (self.encode)(&record),
                record,
            })
            .collect();
        let view = Arc::new(ModuleView {
            revision: revision.unwrap_or(-1),
            loaded_at,
            instances,
        });
        if revision.is_some() {
            let mut views = self
                .views
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if views.len() >= MAX_VIEWS {
                views.clear();
            }
            views.insert(module_id.to_owned(), view.clone());
        }
        Ok(view)
    }
}
