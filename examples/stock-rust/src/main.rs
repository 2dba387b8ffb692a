//! Runs the Stock module against the core named by the environment (see
//! `plinth_client::Client::from_env` and `Module::tls_from_env`), listening
//! on `MODULE_LISTEN` (default `127.0.0.1:0`); prints the address it serves,
//! drains on SIGTERM or Ctrl-C. The module must be published first (its
//! `manifest.yaml`, as `docs/operators.md` shows).

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let client = plinth_client::Client::from_env()?.connect().await?;
    let listen = std::env::var("MODULE_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("{}", listener.local_addr()?);
    stock_module::serve(client, listener, plinth_client::shutdown_signal()).await?;
    Ok(())
}
