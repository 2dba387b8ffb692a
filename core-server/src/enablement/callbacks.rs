//! Calling modules' lifecycle callbacks (plinth.module.v1) on a serving
//! instance found in the registry, preferring the version the tenant runs,
//! over the connections the registry's probes use (TLS with the core's
//! certificate for `https://` endpoints), each call within [`TIMEOUT`].

use std::{sync::Arc, time::Duration};

use plinth_api::{
    module::v1::{self as proto, module_lifecycle_service_client::ModuleLifecycleServiceClient},
    registry::v1::LifecycleCallback,
};
use plinth_platform::{
    clock,
    config::Config,
    error::ApiError,
    identity::Principal,
    store::{
        Store,
        instances::{InstanceRecord, InstanceStatus},
        module_callbacks::{CallbackActor, CallbackKind},
        tenants::TenantRecord,
    },
    text,
};
use rand::seq::IndexedRandom;
use registry_server::connections::InstanceChannels;
use tonic::transport::Channel;
use tracing::Instrument;
use uuid::Uuid;

use super::catalog::ModuleVersion;

/// How long a module has to answer a callback.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Longest veto reason passed on, in characters.
const MAX_VETO_REASON: usize = 500;

/// What a callback is about.
#[derive(Debug, Clone)]
pub struct Target {
    pub tenant_id: Uuid,
    pub tenant_code: String,
    pub company_id: Option<Uuid>,
    pub module_version: String,
    /// The resolved configuration, as JSON text.
    pub config: String,
}

impl Target {
    pub fn tenant(tenant: &TenantRecord, module_version: &str, config: String) -> Target {
        Target {
            tenant_id: tenant.id,
            tenant_code: tenant.code.clone(),
            company_id: None,
            module_version: module_version.to_owned(),
            config,
        }
    }

    pub fn in_company(self, company_id: Uuid) -> Target {
        Target {
            company_id: Some(company_id),
            ..self
        }
    }

    fn message(self) -> proto::CallbackTarget {
        proto::CallbackTarget {
            tenant_id: self.tenant_id.to_string(),
            tenant_code: self.tenant_code,
            company_id: self.company_id.map(|id| id.to_string()).unwrap_or_default(),
            module_version: self.module_version,
            config: self.config,
        }
    }
}

/// Who made a change, as callbacks report it.
pub fn actor_of(principal: &Principal) -> CallbackActor {
    CallbackActor {
        user_id: principal.user.as_ref().map(|user| user.user_id),
        module_id: principal.module_id().map(str::to_owned),
        api_key_id: principal.api_key.as_ref().map(|key| key.key_id),
    }
}

fn actor_message(actor: &CallbackActor) -> proto::Actor {
    proto::Actor {
        user_id: actor.user_id.map(|id| id.to_string()).unwrap_or_default(),
        module_id: actor.module_id.clone().unwrap_or_default(),
        api_key_id: actor
            .api_key_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}

/// How a delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The module answered OK.
    Acknowledged,
    /// The callback is optional and no instance serves.
    Skipped,
    /// Try again; why, for the record.
    Failed(String),
}

/// One after-change callback to deliver.
pub struct Delivery {
    pub kind: CallbackKind,
    pub operation_id: Uuid,
    pub attempt: u32,
    pub actor: CallbackActor,
}

pub struct Callbacks {
    store: Store,
    channels: InstanceChannels,
}

impl Callbacks {
    pub fn new(store: Store, config: &Config) -> Arc<Callbacks> {
        Arc::new(Callbacks {
            store,
            channels: InstanceChannels::new(config),
        })
    }

    /// Asks the module before a change (OnTenantEnabling,
    /// OnCompanyEnabling) when its version implements the callback: a
    /// refusal is MODULE_VETOED; no serving instance, a failure or no answer
    /// in time is MODULE_UNAVAILABLE unless the callback is optional.
    pub async fn ask(
        &self,
        version: &ModuleVersion,
        callback: LifecycleCallback,
        target: Target,
        principal: &Principal,
    ) -> Result<(), ApiError> {
        let Some(optional) = version.callback(callback) else {
            return Ok(());
        };
        let unavailable = || {
            if optional {
                Ok(())
            } else {
                Err(ApiError::ModuleUnavailable {
                    module_id: version.module_id.clone(),
                    callback: callback.as_str_name(),
                })
            }
        };
        let Some(mut client) = self.client(version).await? else {
            return unavailable();
        };
        let (target, actor) = (
            Some(target.message()),
            Some(actor_message(&actor_of(principal))),
        );
        let answer = async {
            match callback {
                LifecycleCallback::CompanyEnabling => {
                    let request = timed(proto::OnCompanyEnablingRequest { target, actor });
                    within(client.on_company_enabling(request))
                        .await
                        .map(|answer| (answer.allow, answer.reason))
                }
                _ => {
                    let request = timed(proto::OnTenantEnablingRequest { target, actor });
                    within(client.on_tenant_enabling(request))
                        .await
                        .map(|answer| (answer.allow, answer.reason))
                }
            }
        }
        .instrument(callback_span(version, callback))
        .await;
        match answer {
            Ok((true, _)) => Ok(()),
            Ok((false, reason)) => Err(ApiError::ModuleVetoed {
                module_id: version.module_id.clone(),
                reason: veto_reason(&reason),
            }),
            Err(_) => unavailable(),
        }
    }

    /// Delivers an after-change callback once.
    pub async fn deliver(
        &self,
        version: &ModuleVersion,
        target: Target,
        delivery: Delivery,
    ) -> Result<Delivered, ApiError> {
        let callback = lifecycle_callback(delivery.kind);
        let optional = version.callback(callback).unwrap_or(true);
        let Some(mut client) = self.client(version).await? else {
            return Ok(if optional {
                Delivered::Skipped
            } else {
                Delivered::Failed("no serving instance".to_owned())
            });
        };
        let (target, delivery) = (
            Some(target.message()),
            Some(proto::Delivery {
                operation_id: delivery.operation_id.to_string(),
                attempt: delivery.attempt,
                actor: Some(actor_message(&delivery.actor)),
            }),
        );
        let answered = async {
            match callback {
                LifecycleCallback::TenantEnabled => {
                    let request = timed(proto::OnTenantEnabledRequest { target, delivery });
                    within(client.on_tenant_enabled(request)).await.map(drop)
                }
                LifecycleCallback::TenantDisabled => {
                    let request = timed(proto::OnTenantDisabledRequest { target, delivery });
                    within(client.on_tenant_disabled(request)).await.map(drop)
                }
                LifecycleCallback::CompanyEnabled => {
                    let request = timed(proto::OnCompanyEnabledRequest { target, delivery });
                    within(client.on_company_enabled(request)).await.map(drop)
                }
                _ => {
                    let request = timed(proto::OnCompanyDisabledRequest { target, delivery });
                    within(client.on_company_disabled(request)).await.map(drop)
                }
            }
        }
        .instrument(callback_span(version, callback))
        .await;
        Ok(match answered {
            Ok(()) => Delivered::Acknowledged,
            Err(problem) => Delivered::Failed(problem),
        })
    }

    /// A client of a serving instance of the module, preferring `version`.
    async fn client(
        &self,
        version: &ModuleVersion,
    ) -> Result<Option<ModuleLifecycleServiceClient<Channel>>, ApiError> {
        let serving: Vec<InstanceRecord> = self
            .store
            .instances
            .live_instances_of(&version.module_id, clock::now())
            .await?
            .into_iter()
            .filter(|instance| instance.status == InstanceStatus::Serving)
            .collect();
        let same_version: Vec<&InstanceRecord> = serving
            .iter()
            .filter(|instance| instance.version == version.version)
            .collect();
        let chosen = match same_version.choose(&mut rand::rng()) {
            Some(instance) => Some(*instance),
            None => serving.choose(&mut rand::rng()),
        };
        Ok(chosen
            .and_then(|instance| self.channels.channel(&instance.endpoint, TIMEOUT))
            .map(ModuleLifecycleServiceClient::new))
    }
}

/// The span of one call to a module's lifecycle service (a CLIENT span in
/// exported traces).
fn callback_span(version: &ModuleVersion, callback: LifecycleCallback) -> tracing::Span {
    tracing::info_span!(
        "module_callback",
        module_id = %version.module_id,
        version = %version.version,
        callback = callback.as_str_name()
    )
}

fn lifecycle_callback(kind: CallbackKind) -> LifecycleCallback {
    match kind {
        CallbackKind::TenantEnabled => LifecycleCallback::TenantEnabled,
        CallbackKind::TenantDisabled => LifecycleCallback::TenantDisabled,
        CallbackKind::CompanyEnabled => LifecycleCallback::CompanyEnabled,
        CallbackKind::CompanyDisabled => LifecycleCallback::CompanyDisabled,
    }
}

/// A request that tells the module its deadline.
fn timed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(TIMEOUT);
    request
}

/// The call's answer within [`TIMEOUT`]; what went wrong otherwise, for
/// the record (the status code and a bounded message).
async fn within<T>(
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(TIMEOUT, call).await {
        Ok(Ok(answer)) => Ok(answer.into_inner()),
        Ok(Err(status)) => Err(format!(
            "{:?}: {}",
            status.code(),
            status.message().chars().take(200).collect::<String>()
        )),
        Err(_) => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
    }
}

/// A module's veto reason as the caller is shown it: one line, bounded.
fn veto_reason(reason: &str) -> String {
    let cleaned: String = reason
        .chars()
        .map(|character| {
            if character.is_control() {
                ' '
            } else {
                character
            }
        })
        .take(MAX_VETO_REASON)
        .collect();
    match text::text_problem(cleaned.trim(), MAX_VETO_REASON) {
        None if !cleaned.trim().is_empty() => cleaned.trim().to_owned(),
        _ => "refused without a reason".to_owned(),
    }
}
