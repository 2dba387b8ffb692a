//! An [`ApiError`] on the wire: its code, message and details.

use std::collections::HashMap;

use plinth_api::errors::v1::ErrorReason;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use super::{ApiError, ERROR_DOMAIN};
use crate::request_id;

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        let message = error.to_string();
        let (code, reason, metadata, mut details) = match error {
            ApiError::InvalidArgument(violations) => (
                Code::InvalidArgument,
                ErrorReason::InvalidArgument,
                HashMap::new(),
                ErrorDetails::with_bad_request(violations.into_field_violations()),
            ),
            ApiError::Unauthenticated => (
                Code::Unauthenticated,
                ErrorReason::Unauthenticated,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::CertificateModuleMismatch => (
                Code::Unauthenticated,
                ErrorReason::CertificateModuleMismatch,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::CredentialsConflict => (
                Code::PermissionDenied,
                ErrorReason::CredentialsConflict,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::TenantNotActive { status } => (
                Code::FailedPrecondition,
                ErrorReason::TenantNotActive,
                HashMap::from([("status".to_owned(), status.to_owned())]),
                ErrorDetails::new(),
            ),
            ApiError::MessageTooLarge { limit_bytes } => (
                Code::ResourceExhausted,
                ErrorReason::MessageTooLarge,
                HashMap::from([("limit_bytes".to_owned(), limit_bytes.to_string())]),
                ErrorDetails::new(),
            ),
            ApiError::MalformedMessage => (
                Code::InvalidArgument,
                ErrorReason::MalformedMessage,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::Unimplemented => (
                Code::Unimplemented,
                ErrorReason::Unimplemented,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::DeadlineExceeded => (
                Code::DeadlineExceeded,
                ErrorReason::DeadlineExceeded,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::PermissionDenied { permission } => (
                Code::PermissionDenied,
                ErrorReason::PermissionDenied,
                HashMap::from([("permission".to_owned(), permission)]),
                ErrorDetails::new(),
            ),
            ApiError::NotFound { resource_type } => (
                Code::NotFound,
                ErrorReason::NotFound,
                HashMap::from([("resource_type".to_owned(), resource_type.to_owned())]),
                ErrorDetails::new(),
            ),
            ApiError::AlreadyExists {
                resource_type,
                field,
            } => (
                Code::AlreadyExists,
                ErrorReason::AlreadyExists,
                HashMap::from([
                    ("resource_type".to_owned(), resource_type.to_owned()),
                    ("field".to_owned(), field.to_owned()),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::TenantLimitReached { limit, value } => (
                Code::FailedPrecondition,
                ErrorReason::TenantLimitReached,
                HashMap::from([
                    ("limit".to_owned(), limit.to_owned()),
                    ("value".to_owned(), value.to_string()),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::FailedPrecondition {
                resource_type,
                state,
            } => (
                Code::FailedPrecondition,
                ErrorReason::FailedPrecondition,
                HashMap::from([
                    ("resource_type".to_owned(), resource_type.to_owned()),
                    ("state".to_owned(), state),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::WeakPassword { rule, message } => (
                Code::InvalidArgument,
                ErrorReason::WeakPassword,
                HashMap::from([("rule".to_owned(), rule.to_owned())]),
                ErrorDetails::with_bad_request(vec![FieldViolation::new("password", message)]),
            ),
            ApiError::InvalidCredentials => (
                Code::Unauthenticated,
                ErrorReason::InvalidCredentials,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::RefreshTokenReused => (
                Code::Unauthenticated,
                ErrorReason::RefreshTokenReused,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::RateLimited { scope, retry_after } => (
                Code::ResourceExhausted,
                ErrorReason::RateLimited,
                HashMap::from([("scope".to_owned(), scope.to_owned())]),
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            ApiError::Unavailable => (
                Code::Unavailable,
                ErrorReason::BackendUnavailable,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::ShuttingDown => (
                Code::Unavailable,
                ErrorReason::ShuttingDown,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::Overloaded { retry_after } => (
                Code::Unavailable,
                ErrorReason::Overloaded,
                HashMap::new(),
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            ApiError::RbacVersionBehind { retry_after } => (
                Code::Unavailable,
                ErrorReason::RbacVersionBehind,
                HashMap::new(),
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            ApiError::UnknownPermission { permission } => (
                Code::FailedPrecondition,
                ErrorReason::UnknownPermission,
                HashMap::from([("permission".to_owned(), permission)]),
                ErrorDetails::new(),
            ),
            ApiError::SystemRole { role_key } => (
                Code::FailedPrecondition,
                ErrorReason::SystemRole,
                HashMap::from([("role_key".to_owned(), role_key)]),
                ErrorDetails::new(),
            ),
            ApiError::LastTenantAdmin => (
                Code::FailedPrecondition,
                ErrorReason::LastTenantAdmin,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::PrivilegeEscalation { permission } => (
                Code::PermissionDenied,
                ErrorReason::PrivilegeEscalation,
                HashMap::from([("permission".to_owned(), permission)]),
                ErrorDetails::new(),
            ),
            ApiError::ReservedNamespace { module_id } => (
                Code::InvalidArgument,
                ErrorReason::ReservedNamespace,
                HashMap::from([("module_id".to_owned(), module_id)]),
                ErrorDetails::with_bad_request(vec![FieldViolation::new(
                    "module_id",
                    "is reserved by the platform",
                )]),
            ),
            ApiError::NamespaceViolation { module_id } => (
                Code::PermissionDenied,
                ErrorReason::ModuleNamespaceViolation,
                HashMap::from([("module_id".to_owned(), module_id)]),
                ErrorDetails::new(),
            ),
            ApiError::RoleCycle { path } => (
                Code::FailedPrecondition,
                ErrorReason::RoleCycle,
                HashMap::from([("path".to_owned(), path)]),
                ErrorDetails::new(),
            ),
            ApiError::InvalidManifest {
                module_id,
                violations,
            } => (
                Code::InvalidArgument,
                ErrorReason::InvalidManifest,
                HashMap::from([("module_id".to_owned(), module_id)]),
                ErrorDetails::with_bad_request(violations.into_field_violations()),
            ),
            ApiError::VersionImmutable { module_id, version } => (
                Code::AlreadyExists,
                ErrorReason::ModuleVersionImmutable,
                HashMap::from([
                    ("module_id".to_owned(), module_id),
                    ("version".to_owned(), version),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::DependencyCycle { path } => (
                Code::FailedPrecondition,
                ErrorReason::DependencyCycle,
                HashMap::from([("path".to_owned(), path)]),
                ErrorDetails::new(),
            ),
            ApiError::DependencyUnsatisfied {
                module_id,
                requirement,
            } => (
                Code::FailedPrecondition,
                ErrorReason::DependencyUnsatisfied,
                HashMap::from([
                    ("module_id".to_owned(), module_id),
                    ("version_requirement".to_owned(), requirement),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::ModuleHasDependents {
                module_id,
                dependents,
            } => (
                Code::FailedPrecondition,
                ErrorReason::ModuleHasDependents,
                HashMap::from([
                    ("module_id".to_owned(), module_id),
                    // Bounded: the first few name the problem.
                    (
                        "dependents".to_owned(),
                        dependents
                            .iter()
                            .take(10)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::RoleTooDeep { max_depth } => (
                Code::FailedPrecondition,
                ErrorReason::RoleCycle,
                HashMap::from([("max_depth".to_owned(), max_depth.to_string())]),
                ErrorDetails::new(),
            ),
            ApiError::EtagMismatch {
                resource_type,
                current_etag,
            } => (
                Code::Aborted,
                ErrorReason::EtagMismatch,
                HashMap::from([
                    ("resource_type".to_owned(), resource_type.to_owned()),
                    ("current_etag".to_owned(), current_etag),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::ModuleVetoed { module_id, reason } => (
                Code::FailedPrecondition,
                ErrorReason::ModuleVetoed,
                HashMap::from([
                    ("module_id".to_owned(), module_id),
                    ("veto_reason".to_owned(), reason),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::ModuleUnavailable {
                module_id,
                callback,
            } => (
                Code::Unavailable,
                ErrorReason::ModuleUnavailable,
                HashMap::from([
                    ("module_id".to_owned(), module_id),
                    ("callback".to_owned(), callback.to_owned()),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::ModuleNotEnabled { module_id, state } => (
                Code::FailedPrecondition,
                ErrorReason::ModuleNotEnabled,
                HashMap::from([
                    ("module_id".to_owned(), module_id),
                    ("state".to_owned(), state),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::ConfigSchemaViolation {
                module_id,
                violations,
            } => (
                Code::InvalidArgument,
                ErrorReason::ConfigSchemaViolation,
                HashMap::from([("module_id".to_owned(), module_id)]),
                ErrorDetails::with_bad_request(violations.into_field_violations()),
            ),
            ApiError::ModulesVersionBehind { retry_after } => (
                Code::Unavailable,
                ErrorReason::ModulesVersionBehind,
                HashMap::new(),
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            ApiError::IdempotencyKeyConflict {
                idempotency_key,
                index,
            } => (
                Code::AlreadyExists,
                ErrorReason::IdempotencyKeyConflict,
                HashMap::from([
                    ("idempotency_key".to_owned(), idempotency_key),
                    ("index".to_owned(), index.to_string()),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::Internal(source) => {
                let request_id = request_id::current().unwrap_or_default();
                tracing::error!(%request_id, error = %error_chain(&*source), "internal error");
                return Status::with_error_details(
                    Code::Internal,
                    format!("internal error (request id {request_id})"),
                    ErrorDetails::with_error_info(
                        ErrorReason::Internal.as_str_name(),
                        ERROR_DOMAIN,
                        HashMap::from([("request_id".to_owned(), request_id.to_string())]),
                    ),
                );
            }
        };
        details.set_error_info(reason.as_str_name(), ERROR_DOMAIN, metadata);
        Status::with_error_details(code, message, details)
    }
}

/// `outer: inner: innermost`, for logs only.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
