use plinth_client::auth::v1::{
    PrincipalKind as ProtoPrincipalKind, WhoAmIRequest, WhoAmIResponse,
    auth_service_server::AuthService,
};
use plinth_platform::identity::{self, Principal, PrincipalKind};
use tonic::{Request, Response, Status};

/// AuthService. WhoAmI is served now; users, tokens and keys come with the
/// Auth issue and answer UNIMPLEMENTED until then.
pub struct AuthApi;

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let principal = identity::principal(&request)?;
        Ok(Response::new(who_am_i(principal)))
    }
}

fn who_am_i(principal: &Principal) -> WhoAmIResponse {
    let kind = match principal.kind() {
        PrincipalKind::Anonymous => ProtoPrincipalKind::Anonymous,
        PrincipalKind::Operator => ProtoPrincipalKind::Operator,
        PrincipalKind::Module => ProtoPrincipalKind::Module,
    };
    let key = principal.api_key.as_ref();
    WhoAmIResponse {
        kind: kind.into(),
        api_key_id: key.map(|key| key.key_id.to_string()).unwrap_or_default(),
        module_id: key
            .and_then(|key| key.module_id.clone())
            .unwrap_or_default(),
        tenant_id: key
            .and_then(|key| key.tenant_id)
            .map(|id| id.to_string())
            .unwrap_or_default(),
        user_id: String::new(),
        session_id: String::new(),
        certificate_module_id: principal.certificate_module.clone().unwrap_or_default(),
        scopes: key.map(|key| key.scopes.clone()).unwrap_or_default(),
        request_id: principal.request_id.to_string(),
    }
}
