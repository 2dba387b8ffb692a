//! The one place where failures become gRPC statuses, with rich details:
//! `ErrorInfo` (stable reason from `plinth.errors.v1.ErrorReason`),
//! `BadRequest` field violations and `RetryInfo`.

mod status;

use std::time::Duration;

use tonic_types::FieldViolation;

use crate::store::StoreError;

/// `ErrorInfo.domain` of every Plinth error.
pub const ERROR_DOMAIN: &str = "plinth.dev";

/// The same words for every authentication failure, so that callers cannot
/// tell a missing key from a wrong, revoked or expired one.
pub const UNAUTHENTICATED_MESSAGE: &str = "missing or invalid credentials";

/// Field violations shown in one answer; the rest are counted, so that a
/// request with many bad elements cannot make a large error.
pub const MAX_SHOWN_VIOLATIONS: usize = 10;

/// The field violations of one request: the first few, and how many more.
#[derive(Debug, Default)]
pub struct Violations {
    shown: Vec<FieldViolation>,
    omitted: usize,
}

impl Violations {
    pub fn push(&mut self, field: &str, description: impl Into<String>) {
        if self.shown.len() < MAX_SHOWN_VIOLATIONS {
            self.shown.push(FieldViolation::new(field, description));
        } else {
            self.omitted += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.shown.is_empty()
    }

    /// `Ok` when nothing was violated.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self))
        }
    }

    fn into_field_violations(self) -> Vec<FieldViolation> {
        let mut violations = self.shown;
        if self.omitted > 0 {
            violations.push(FieldViolation::new(
                "",
                format!("{} more violations not shown", self.omitted),
            ));
        }
        violations
    }
}

/// A failure as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request")]
    InvalidArgument(Violations),
    #[error("{UNAUTHENTICATED_MESSAGE}")]
    Unauthenticated,
    #[error("the API key does not belong to the module named by the client certificate")]
    CertificateModuleMismatch,
    #[error(
        "the credentials do not combine: a bearer token goes only with a module key \
         whose tenant scope includes the token's tenant"
    )]
    CredentialsConflict,
    #[error("the tenant is {status}")]
    TenantNotActive { status: &'static str },
    #[error("the request message is larger than {limit_bytes} bytes")]
    MessageTooLarge { limit_bytes: usize },
    #[error("the request message does not decode")]
    MalformedMessage,
    #[error("not implemented yet")]
    Unimplemented,
    #[error("the call ran past its deadline")]
    DeadlineExceeded,
    #[error("permission denied")]
    PermissionDenied { permission: String },
    #[error("{resource_type} not found")]
    NotFound { resource_type: &'static str },
    #[error("{resource_type} already exists")]
    AlreadyExists {
        resource_type: &'static str,
        field: &'static str,
    },
    #[error("tenant limit {limit} of {value} reached")]
    TenantLimitReached { limit: &'static str, value: i32 },
    #[error("{resource_type} is {state}")]
    FailedPrecondition {
        resource_type: &'static str,
        state: String,
    },
    #[error("{message}")]
    WeakPassword {
        rule: &'static str,
        message: &'static str,
    },
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("refresh token already used; the session is revoked")]
    RefreshTokenReused,
    #[error("too many requests")]
    RateLimited {
        scope: &'static str,
        retry_after: Duration,
    },
    #[error("service temporarily unavailable")]
    Unavailable,
    #[error("this replica has not caught up with the consistency token yet; retry")]
    RbacVersionBehind { retry_after: Duration },
    #[error("no module declared the permission {permission}")]
    UnknownPermission { permission: String },
    #[error("system role {role_key} cannot be deleted and its grants cannot change")]
    SystemRole { role_key: String },
    #[error("the tenant would be left without a permanent tenant admin")]
    LastTenantAdmin,
    #[error("the caller does not hold {permission}, which the role grants")]
    PrivilegeEscalation { permission: String },
    #[error("module id {module_id} is reserved by the platform")]
    ReservedNamespace { module_id: String },
    #[error("a module key may act only in its own module namespace")]
    NamespaceViolation { module_id: String },
    #[error("role parents would form a cycle: {path}")]
    RoleCycle { path: String },
    #[error("the manifest of {module_id} breaks its rules")]
    InvalidManifest {
        module_id: String,
        violations: Violations,
    },
    #[error("module {module_id} {version} is registered with another manifest")]
    VersionImmutable { module_id: String, version: String },
    #[error("module dependencies would form a cycle: {path}")]
    DependencyCycle { path: String },
    #[error("no registered version of {module_id} meets {requirement}")]
    DependencyUnsatisfied {
        module_id: String,
        requirement: String,
    },
    #[error("modules {} depend on {module_id}", .dependents.join(", "))]
    ModuleHasDependents {
        module_id: String,
        dependents: Vec<String>,
    },
    #[error("the server is shutting down; retry on another replica")]
    ShuttingDown,
    #[error("the server is at its bound of calls in progress; retry shortly")]
    Overloaded { retry_after: std::time::Duration },
    #[error("role ancestors would be deeper than {max_depth}")]
    RoleTooDeep { max_depth: i64 },
    #[error("{resource_type} changed since it was read")]
    EtagMismatch {
        resource_type: &'static str,
        current_etag: String,
    },
    #[error("module {module_id} refused: {reason}")]
    ModuleVetoed { module_id: String, reason: String },
    #[error("module {module_id} did not answer {callback}; retry later")]
    ModuleUnavailable {
        module_id: String,
        callback: &'static str,
    },
    #[error("module {module_id} is {state} for the tenant")]
    ModuleNotEnabled { module_id: String, state: String },
    #[error("the configuration of {module_id} does not match its schema")]
    ConfigSchemaViolation {
        module_id: String,
        violations: Violations,
    },
    #[error("this replica has not caught up with the consistency token yet; retry")]
    ModulesVersionBehind { retry_after: Duration },
    #[error("idempotency key {idempotency_key} was used with other content")]
    IdempotencyKeyConflict {
        idempotency_key: String,
        index: usize,
    },
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// One violation of one field.
    pub fn invalid_field(field: &str, description: impl Into<String>) -> ApiError {
        let mut violations = Violations::default();
        violations.push(field, description);
        ApiError::InvalidArgument(violations)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => ApiError::NotFound {
                resource_type: "resource",
            },
            // A missing referenced row is the caller's mistake, never ours.
            StoreError::MissingReference(reference) => ApiError::NotFound {
                resource_type: reference.resource_type(),
            },
            StoreError::Conflict => ApiError::AlreadyExists {
                resource_type: "resource",
                field: "",
            },
            StoreError::Unavailable(_) => ApiError::Unavailable,
            StoreError::Internal(_) => ApiError::Internal(Box::new(error)),
        }
    }
}
