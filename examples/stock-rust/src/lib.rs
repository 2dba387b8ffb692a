//! Stock, a Plinth module in Rust, written with `plinth-client`.
//!
//! It serves `stock.v1.StockService` to signed-in users (bearer tokens
//! verified locally), answers the lifecycle callbacks (refusing an enable
//! without the `warehouse` setting), registers and heartbeats its instance,
//! and drains on shutdown. [`serve`] is all of its setup.
#![forbid(unsafe_code)]

use std::{
    collections::BTreeSet,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
};

use plinth_client::{
    Authenticator, Client, Lifecycle, Module, User, Veto,
    audit::v1::{EventInput, Outcome},
    module::v1::{CallbackTarget, Delivery},
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// The generated API of the module.
pub mod api {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("stock.v1");
}

use api::{
    GetEnablementRequest, GetEnablementResponse, RecordCountRequest, RecordCountResponse,
    stock_service_server::{StockService, StockServiceServer},
};

pub const MODULE_ID: &str = "stock";
pub const VERSION: &str = "1.0.0";

/// Serves the module on `listener` until `shutdown`, then drains; with TLS
/// as `Module::tls_from_env` reads it.
pub async fn serve(
    client: Client,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), plinth_client::ModuleError> {
    let tenants = Tenants::default();
    let users = Arc::new(Authenticator::new(client.clone()));
    let stock = Stock {
        client: client.clone(),
        tenants: tenants.clone(),
    };
    Module::new(&client, MODULE_ID, VERSION)
        .tls_from_env()?
        .lifecycle(tenants)
        .service(users.wrap(StockServiceServer::new(stock)))
        .serve(listener, shutdown)
        .await
}

/// The tenants the core said enabled the module.
#[derive(Clone, Default)]
struct Tenants(Arc<Mutex<BTreeSet<String>>>);

impl Lifecycle for Tenants {
    async fn on_tenant_enabling(&self, target: &CallbackTarget) -> Result<(), Veto> {
        match warehouse(&target.config) {
            Some(_) => Ok(()),
            None => Err(Veto("stock needs the warehouse setting".to_owned())),
        }
    }

    async fn on_tenant_enabled(
        &self,
        target: &CallbackTarget,
        _delivery: &Delivery,
    ) -> Result<(), Status> {
        let mut tenants = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        tenants.insert(target.tenant_id.clone());
        Ok(())
    }
}

/// The `warehouse` setting of a resolved configuration document.
fn warehouse(config: &str) -> Option<String> {
    let document: serde_json::Value = serde_json::from_str(config).ok()?;
    Some(document.get("warehouse")?.as_str()?.to_owned())
}

struct Stock {
    client: Client,
    tenants: Tenants,
}

#[tonic::async_trait]
impl StockService for Stock {
    async fn record_count(
        &self,
        request: Request<RecordCountRequest>,
    ) -> Result<Response<RecordCountResponse>, Status> {
        let user = user(&request)?;
        let count = request.into_inner();
        if count.item_id.is_empty() || count.item_id.chars().count() > 64 {
            return Err(Status::invalid_argument(
                "item_id must be 1 to 64 characters",
            ));
        }
        self.client.require(&user, "stock:item:count").await?;
        let tenant_id = user.tenant_id.to_string();
        let config = self
            .client
            .resolve_config(MODULE_ID, &tenant_id, None)
            .await?;
        let warehouse = warehouse(&config.document)
            .ok_or_else(|| Status::failed_precondition("the tenant has no warehouse setting"))?;
        let event = EventInput {
            action: "stock.item.counted".to_owned(),
            resource_type: "item".to_owned(),
            resource_id: count.item_id,
            outcome: Outcome::Success.into(),
            ..Default::default()
        };
        let user_id = user.user_id.to_string();
        let recorded = self
            .client
            .record_events(&tenant_id, Some(&user_id), vec![event])
            .await?;
        let event_id = recorded
            .events
            .into_iter()
            .next()
            .map(|event| event.id)
            .unwrap_or_default();
        Ok(Response::new(RecordCountResponse {
            warehouse,
            event_id,
        }))
    }

    async fn get_enablement(
        &self,
        request: Request<GetEnablementRequest>,
    ) -> Result<Response<GetEnablementResponse>, Status> {
        let tenant_id = user(&request)?.tenant_id.to_string();
        let tenants = self
            .tenants
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(Response::new(GetEnablementResponse {
            enabled: tenants.contains(&tenant_id),
        }))
    }
}

/// The user the authenticator put in the request.
fn user<T>(request: &Request<T>) -> Result<User, Status> {
    request
        .extensions()
        .get::<User>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("sign in first"))
}
