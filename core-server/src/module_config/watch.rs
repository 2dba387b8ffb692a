//! WatchModuleConfig: one module's resolutions across the tenants in the
//! caller's scope: a snapshot at a revision of the configuration change
//! log, then each change after it (read from the log whenever this
//! replica hears of a change, and each second), checkpoints while silent,
//! and a clean end when the server shuts down. A resume after a revision
//! the log no longer holds, or never reached, gets a snapshot marked
//! `resync`; so does every watcher when a module's active version (every
//! tenant's defaults) changes.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use plinth_platform::{
    access::Scope,
    clock,
    error::ApiError,
    identity::{Principal, PrincipalKind},
    invalidation::{Cache, Change},
    outlet::{End, Messages, Outlet},
    store::module_configs::ConfigChangeRecord,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use uuid::Uuid;

use super::{ModuleConfigs, Resolution, resolve_now};
use crate::{enablement::running_version, permissions::MODULE_CONFIG_READ};

/// Watches one replica serves at once.
pub const MAX_WATCHES: usize = 1_000;
/// Resolutions per snapshot message.
const SNAPSHOT_PART: usize = 100;
/// Tenants read per page while taking a snapshot.
const TENANTS_PER_READ: i64 = 500;
/// Changes read from the log at once.
const CHANGES_PER_READ: i64 = 500;
/// How often a watcher reads the log without news of a change.
const POLL: Duration = Duration::from_secs(1);
/// How long changes stay in the log.
const KEPT: Duration = Duration::from_secs(3600);

/// A watch as asked (already validated).
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub module_id: String,
    pub tenant_id: Option<Uuid>,
    pub after_revision: Option<u64>,
    pub checkpoint_every: Duration,
}

/// What a watcher receives; each brings it to `revision`.
#[derive(Debug)]
pub enum WatchEvent {
    Snapshot {
        revision: i64,
        resync: bool,
        resolutions: Vec<Resolution>,
        complete: bool,
    },
    Change {
        revision: i64,
        /// Forget the resolution of this tenant (and company).
        removed: Option<(Uuid, Option<Uuid>)>,
        resolution: Option<Box<Resolution>>,
    },
    Checkpoint {
        revision: i64,
    },
}

pub type WatchStream = Messages<WatchEvent>;

/// Tells watchers that a configuration may have changed.
struct News(watch::Sender<u64>);

impl Cache for News {
    fn apply(&self, change: Change) {
        if matches!(
            change,
            Change::Modules { .. } | Change::Catalog | Change::Everything
        ) {
            self.0.send_modify(|heard| *heard = heard.wrapping_add(1));
        }
    }
}

pub struct ConfigWatches {
    configs: ModuleConfigs,
    news: watch::Receiver<u64>,
    draining: watch::Receiver<bool>,
    slots: Arc<Semaphore>,
}

impl ConfigWatches {
    /// Hears of changes through the invalidator, and prunes the log of
    /// changes older than an hour every minute.
    pub fn start(configs: ModuleConfigs, draining: watch::Receiver<bool>) -> ConfigWatches {
        let (sender, news) = watch::channel(0);
        configs.invalidator.register(Arc::new(News(sender)));
        let store = configs.store.clone();
        let mut stopping = draining.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = stopping.changed() => return,
                }
                let before = clock::now() - chrono::Duration::from_std(KEPT).unwrap_or_default();
                if let Err(error) = store.module_configs.forget_config_changes(before).await {
                    tracing::warn!(%error, "pruning configuration changes");
                }
            }
        });
        ConfigWatches {
            configs,
            news,
            draining,
            slots: Arc::new(Semaphore::new(MAX_WATCHES)),
        }
    }

    pub async fn watch(
        &self,
        principal: &Principal,
        asked: WatchRequest,
    ) -> Result<WatchStream, ApiError> {
        if principal.kind() == PrincipalKind::Anonymous {
            return Err(ApiError::Unauthenticated);
        }
        let scope = match asked.tenant_id.or(principal.tenant_scope()) {
            Some(tenant_id) => {
                self.configs
                    .access
                    .require_visible(
                        principal,
                        MODULE_CONFIG_READ,
                        Scope::tenant(tenant_id),
                        "tenant",
                    )
                    .await?;
                WatchScope::Tenant(tenant_id)
            }
            None => WatchScope::Readable,
        };
        if self
            .configs
            .catalog
            .module(&asked.module_id)
            .await?
            .is_none()
        {
            return Err(ApiError::NotFound {
                resource_type: "module",
            });
        }
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::RateLimited {
                scope: "watches",
                retry_after: Duration::from_secs(5),
            })?;
        let (outlet, stream) = Outlet::open(self.draining.clone());
        let watcher = Watcher {
            configs: self.configs.clone(),
            principal: principal.clone(),
            module_id: asked.module_id,
            scope,
            checkpoint_every: asked.checkpoint_every,
            outlet,
            news: self.news.clone(),
            position: 0,
        };
        tokio::spawn(watcher.run(asked.after_revision, slot));
        Ok(stream)
    }
}

/// Which tenants a watcher follows.
#[derive(Debug, Clone, Copy)]
enum WatchScope {
    Tenant(Uuid),
    /// Every tenant holding the module that the caller may read.
    Readable,
}

struct Watcher {
    configs: ModuleConfigs,
    principal: Principal,
    module_id: String,
    scope: WatchScope,
    checkpoint_every: Duration,
    outlet: Outlet<WatchEvent>,
    news: watch::Receiver<u64>,
    position: i64,
}

impl Watcher {
    async fn run(mut self, after_revision: Option<u64>, _slot: OwnedSemaphorePermit) {
        let ended = self.follow(after_revision).await;
        let revision = self.position;
        self.outlet
            .finish(ended, || WatchEvent::Checkpoint { revision })
            .await;
    }

    async fn follow(&mut self, after_revision: Option<u64>) -> Result<(), End> {
        self.news.mark_unchanged();
        match after_revision {
            None => self.snapshot(false).await?,
            Some(after) => {
                let store = &self.configs.store;
                let current = store
                    .module_configs
                    .config_revision()
                    .await
                    .map_err(ApiError::from)?;
                let oldest = store
                    .module_configs
                    .oldest_config_change()
                    .await
                    .map_err(ApiError::from)?;
                match i64::try_from(after) {
                    Ok(after) if after <= current && (oldest == 0 || after + 1 >= oldest) => {
                        self.position = after;
                    }
                    _ => self.snapshot(true).await?,
                }
            }
        }
        let checkpoint = tokio::time::sleep(self.checkpoint_every);
        tokio::pin!(checkpoint);
        loop {
            if self.catch_up().await? {
                checkpoint
                    .as_mut()
                    .reset(tokio::time::Instant::now() + self.checkpoint_every);
            }
            tokio::select! {
                heard = self.news.changed() => {
                    if heard.is_err() {
                        return Err(End::ShuttingDown);
                    }
                }
                () = tokio::time::sleep(POLL) => {}
                () = &mut checkpoint => {
                    self.send(WatchEvent::Checkpoint { revision: self.position }).await?;
                    checkpoint.as_mut().reset(tokio::time::Instant::now() + self.checkpoint_every);
                }
                () = self.outlet.shutting_down() => return Err(End::ShuttingDown),
            }
        }
    }

    /// Sends the changes of the log after the position; whether anything
    /// was sent.
    async fn catch_up(&mut self) -> Result<bool, End> {
        let mut sent = false;
        loop {
            let (read_up_to, changes) = self
                .configs
                .store
                .module_configs
                .config_changes_after(&self.module_id, self.position, CHANGES_PER_READ)
                .await
                .map_err(ApiError::from)?;
            let complete = (changes.len() as i64) < CHANGES_PER_READ;
            for change in changes {
                let Some(tenant_id) = change.tenant_id else {
                    // Every tenant's defaults may have changed: start over.
                    self.snapshot(true).await?;
                    return Ok(true);
                };
                sent |= self.deliver(&change, tenant_id).await?;
                self.position = change.revision;
            }
            if complete {
                self.position = self.position.max(read_up_to);
                return Ok(sent);
            }
        }
    }

    /// Sends what one change of the log changed in scope; whether anything
    /// was sent.
    async fn deliver(&mut self, change: &ConfigChangeRecord, tenant_id: Uuid) -> Result<bool, End> {
        if !self.follows(tenant_id).await? {
            return Ok(false);
        }
        let revision = change.revision;
        let Some(resolutions) = self.resolutions_of(tenant_id, change.company()).await? else {
            self.send(WatchEvent::Change {
                revision,
                removed: Some((tenant_id, change.company())),
                resolution: None,
            })
            .await?;
            return Ok(true);
        };
        for resolution in resolutions {
            self.send(WatchEvent::Change {
                revision,
                removed: None,
                resolution: Some(Box::new(resolution)),
            })
            .await?;
        }
        Ok(true)
    }

    /// Whether the tenant is in the watch's scope and the caller may read
    /// its configuration (asked without auditing each tenant).
    async fn follows(&self, tenant_id: Uuid) -> Result<bool, ApiError> {
        match self.scope {
            WatchScope::Tenant(scoped) => Ok(scoped == tenant_id),
            WatchScope::Readable => Ok(self
                .configs
                .access
                .held(&self.principal, Scope::tenant(tenant_id))
                .await?
                .allows(MODULE_CONFIG_READ.name)),
        }
    }

    /// The tenant's resolution then those of its companies with a layer of
    /// their own (only the company's when one is named); `None` when the
    /// tenant does not hold the module.
    async fn resolutions_of(
        &self,
        tenant_id: Uuid,
        only_company: Option<Uuid>,
    ) -> Result<Option<Vec<Resolution>>, ApiError> {
        let store = &self.configs.store;
        let Some(modules) = store.tenant_modules.tenant_modules(tenant_id).await? else {
            return Ok(None);
        };
        let Some(record) = modules
            .modules
            .iter()
            .find(|record| record.module_id == self.module_id && record.state.is_held())
        else {
            return Ok(None);
        };
        let Some(version) = running_version(&self.configs.catalog, record).await? else {
            return Ok(None);
        };
        let companies: BTreeSet<Uuid> = match only_company {
            Some(company_id) => BTreeSet::from([company_id]),
            None => store
                .module_configs
                .layers(tenant_id, &self.module_id)
                .await?
                .into_iter()
                .filter_map(|layer| layer.company_id)
                .collect(),
        };
        let mut resolutions = Vec::with_capacity(1 + companies.len());
        if only_company.is_none() {
            resolutions.push(
                resolve_now(
                    store,
                    &self.configs.encryption,
                    &version,
                    tenant_id,
                    None,
                    modules.version,
                )
                .await?,
            );
        }
        for company_id in companies {
            resolutions.push(
                resolve_now(
                    store,
                    &self.configs.encryption,
                    &version,
                    tenant_id,
                    Some(company_id),
                    modules.version,
                )
                .await?,
            );
        }
        Ok(Some(resolutions))
    }

    /// Sends every resolution in scope at the log's current revision.
    async fn snapshot(&mut self, resync: bool) -> Result<(), End> {
        let store = self.configs.store.clone();
        let revision = store
            .module_configs
            .config_revision()
            .await
            .map_err(ApiError::from)?;
        let tenants: Vec<Uuid> = match self.scope {
            WatchScope::Tenant(tenant_id) => vec![tenant_id],
            WatchScope::Readable => {
                let mut tenants = Vec::new();
                let mut after = None;
                loop {
                    let page = store
                        .tenant_modules
                        .tenants_holding(&self.module_id, after, TENANTS_PER_READ)
                        .await
                        .map_err(ApiError::from)?;
                    after = page.last().copied();
                    let done = (page.len() as i64) < TENANTS_PER_READ;
                    tenants.extend(page);
                    if done {
                        break;
                    }
                }
                tenants
            }
        };
        let mut part = Vec::with_capacity(SNAPSHOT_PART);
        let mut first = true;
        for tenant_id in tenants {
            if !self.follows(tenant_id).await? {
                continue;
            }
            for resolution in self
                .resolutions_of(tenant_id, None)
                .await?
                .unwrap_or_default()
            {
                part.push(resolution);
                if part.len() == SNAPSHOT_PART {
                    let resolutions = std::mem::take(&mut part);
                    self.send(WatchEvent::Snapshot {
                        revision,
                        resync: resync && first,
                        resolutions,
                        complete: false,
                    })
                    .await?;
                    first = false;
                }
            }
        }
        self.send(WatchEvent::Snapshot {
            revision,
            resync: resync && first,
            resolutions: part,
            complete: true,
        })
        .await?;
        self.position = revision;
        Ok(())
    }

    async fn send(&mut self, event: WatchEvent) -> Result<(), End> {
        self.outlet.send(event).await
    }
}
