//! Starting and stopping the service.

use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wan_pipeline::{HubOptions, LoadOptions};

use crate::api;
use crate::config::ServerConfig;
use crate::diagnostic::DiagnosticGenerator;
use crate::error::{Error, Result};
use crate::generator::{Generator, GeneratorSet};
use crate::metrics::Metrics;
use crate::pipeline::PipelineGenerator;
use crate::service::Service;
use crate::sqlite::SqliteStore;
use crate::store::JobStore;
use crate::webhook::{WebhookSigner, Webhooks};
use crate::worker;

/// Builds the generator for the configured models: the diagnostic model for
/// `diagnostic[:MS]`, the Wan pipeline for the others.
pub fn open_generator(config: &ServerConfig, hub: &HubOptions) -> Result<Arc<dyn Generator>> {
    let specs = config.model_specs();
    if specs.is_empty() {
        return Err(Error::Config(
            "no model to serve: give at least one --model".into(),
        ));
    }
    let mut members: Vec<Arc<dyn Generator>> = Vec::new();
    let mut pipeline_specs = Vec::new();
    for (name, spec) in &specs {
        match DiagnosticGenerator::from_spec(spec) {
            Some(Ok(diag)) => members.push(Arc::new(diag)),
            Some(Err(message)) => return Err(Error::Config(message)),
            None => pipeline_specs.push((name.clone(), spec.clone())),
        }
    }
    if !pipeline_specs.is_empty() {
        let pipeline = PipelineGenerator::open(&pipeline_specs, hub, LoadOptions::default())?;
        if config.preload {
            pipeline.preload()?;
        }
        let pipeline: Arc<dyn Generator> = Arc::new(pipeline);
        let first_is_pipeline = DiagnosticGenerator::from_spec(&specs[0].1).is_none();
        if first_is_pipeline {
            members.insert(0, pipeline);
        } else {
            members.push(pipeline);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for name in members.iter().flat_map(|g| g.models()) {
        if !seen.insert(name.clone()) {
            return Err(Error::Config(format!("model name {name:?} is given twice")));
        }
    }
    Ok(Arc::new(GeneratorSet::new(members)))
}

/// Holds the data directory for this process: a second server on the same directory is
/// refused, which lets start-up take back the jobs a dead process left running at once.
struct DataDirLock {
    _file: File,
}

fn lock_data_dir(dir: &Path) -> Result<DataDirLock> {
    let path = dir.join("server.lock");
    let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::DataDirInUse {
            path: dir.display().to_string(),
            lock: path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// Creates the data directory and returns its canonical path.
fn prepare_data_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    dir.canonicalize().map_err(|e| Error::io(dir, e))
}

/// A started server: the queue is open, workers run and the socket is bound.
pub struct Server {
    service: Arc<Service>,
    listener: tokio::net::TcpListener,
    workers: Vec<std::thread::JoinHandle<()>>,
    dispatcher: std::thread::JoinHandle<()>,
    _lock: Option<DataDirLock>,
    data_dir: PathBuf,
}

impl Server {
    /// Opens the data directory (creating it) and its embedded SQLite queue, takes back the
    /// jobs a previous process left running, starts the workers and binds `config.listen`.
    pub async fn start(config: ServerConfig, generator: Arc<dyn Generator>) -> Result<Self> {
        config.check()?;
        let data_dir = prepare_data_dir(&config.data_dir)?;
        let lock = lock_data_dir(&data_dir)?;
        let store = SqliteStore::open(&data_dir.join("jobs.sqlite"))?;
        let orphans = store.expire_all_leases()?;
        if orphans > 0 {
            tracing::warn!(
                "{orphans} job(s) were running when the previous server stopped; taking them back"
            );
        }
        Self::launch(config, data_dir, Arc::new(store), generator, Some(lock)).await
    }

    /// Like [`Server::start`] with another queue backend, shared with other processes: jobs of
    /// dead workers come back when their lease expires. Outputs still go under
    /// `config.data_dir`, which must then be shared storage.
    pub async fn start_with_store(
        config: ServerConfig,
        store: Arc<dyn JobStore>,
        generator: Arc<dyn Generator>,
    ) -> Result<Self> {
        config.check()?;
        let data_dir = prepare_data_dir(&config.data_dir)?;
        Self::launch(config, data_dir, store, generator, None).await
    }

    async fn launch(
        config: ServerConfig,
        data_dir: PathBuf,
        store: Arc<dyn JobStore>,
        generator: Arc<dyn Generator>,
        lock: Option<DataDirLock>,
    ) -> Result<Self> {
        if generator.models().is_empty() {
            return Err(Error::Config("the generator serves no model".into()));
        }
        let metrics = Arc::new(Metrics::default());
        let signer =
            WebhookSigner::configured_or_stored(config.webhook_secret.as_deref(), &data_dir)?;
        let webhooks = Webhooks::new(
            Arc::clone(&store),
            signer,
            config.webhook_attempts,
            Duration::from_millis(config.webhook_backoff_ms),
            Arc::clone(&metrics),
        );
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Io {
                path: format!("listen address {}", config.listen),
                source: e,
            })?;
        let workers = config.workers;
        let service = Arc::new(Service::new(
            config, &data_dir, store, generator, metrics, webhooks,
        ));
        let workers = worker::spawn(&service, workers).map_err(|e| Error::io(&data_dir, e))?;
        let dispatcher = service
            .webhooks
            .start()
            .map_err(|e| Error::io(&data_dir, e))?;
        Ok(Self {
            service,
            listener,
            workers,
            dispatcher,
            _lock: lock,
            data_dir,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::io(&self.data_dir, e))
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully: no new connection or job,
    /// the running job stops after its current step and is queued again, workers are joined.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let service = Arc::clone(&self.service);
        let router = api::router(Arc::clone(&self.service));
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: finishing the current step");
                service.begin_shutdown();
            })
            .await;
        self.service.begin_shutdown();
        let workers = self.workers;
        let dispatcher = self.dispatcher;
        let webhooks = self.service.webhooks.clone();
        let joined = tokio::task::spawn_blocking(move || {
            for w in workers {
                if w.join().is_err() {
                    tracing::error!("a worker thread panicked");
                }
            }
            webhooks.stop();
            if dispatcher.join().is_err() {
                tracing::error!("the webhook dispatcher panicked");
            }
        })
        .await;
        if joined.is_err() {
            tracing::error!("joining the workers failed");
        }
        served.map_err(|e| Error::io(&self.data_dir, e))
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Runs the service until SIGINT or SIGTERM on its own runtime; `on_ready` receives the bound
/// address once the server accepts connections.
pub fn run_until_signal(
    config: ServerConfig,
    generator: Arc<dyn Generator>,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io(&config.data_dir, e))?;
    runtime.block_on(async move {
        let server = Server::start(config, generator).await?;
        on_ready(server.local_addr()?);
        server.run(shutdown_signal()).await
    })
}

/// A server running on its own thread and runtime, for embedding and tests; stopped (gracefully)
/// by [`BackgroundServer::shutdown`] or on drop.
pub struct BackgroundServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl BackgroundServer {
    /// Starts a server and returns once it accepts connections.
    pub fn start(config: ServerConfig, generator: Arc<dyn Generator>) -> Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<SocketAddr>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let data_dir = config.data_dir.clone();
        let thread = std::thread::Builder::new()
            .name("wan-serve".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| Error::io(&config.data_dir, e))?;
                runtime.block_on(async move {
                    let server = match Server::start(config, generator).await {
                        Ok(s) => s,
                        Err(e) => {
                            let message = e.to_string();
                            let _ = ready_tx.send(Err(e));
                            return Err(Error::Config(message));
                        }
                    };
                    let _ = ready_tx.send(server.local_addr());
                    server
                        .run(async {
                            let _ = stop_rx.await;
                        })
                        .await
                })
            })
            .map_err(|e| Error::io(&data_dir, e))?;
        let addr = ready_rx
            .recv()
            .map_err(|_| Error::Config("the server thread stopped before it was ready".into()))??;
        Ok(Self {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops gracefully and waits for the server thread.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Config("the server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            tracing::error!("stopping the background server: {e}");
        }
    }
}
