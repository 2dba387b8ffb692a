//! End-to-end tests over real gRPC, real PostgreSQL and real SQLite; one
//! binary so that two cores link it once.

mod admin;
mod api_keys;
mod audit;
mod bad_input;
mod client_rs;
mod credentials;
mod example_modules;
mod faults;
mod generated_clients;
mod http2_abuse;
mod identity;
mod inactive_tenants;
mod key_encryption;
mod limits;
mod modules;
mod operator_guide;
mod rbac;
mod redis_outage;
mod registry;
mod replicas;
mod server;
mod store;
mod tenants;
mod tls;
mod tokens;
mod traces;
mod users;

/// Instantiates a module of `async fn(Backend)` tests for both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(plinth_tests::Backend::Postgres).await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(plinth_tests::Backend::Sqlite).await;
                }
            )+
        }
    };
}
