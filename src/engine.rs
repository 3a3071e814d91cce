//! The embedding API: an engine holding tables in a data directory.

use crate::append::Appended;
use crate::config::TableDefinition;
use crate::error::{Error, io_error};
use crate::metrics::Metrics;
use crate::table::{PauseStatus, ScrubOptions, Table, TableOptions, TableStatus};
use arrow::array::RecordBatch;
use serde_json::Value;
use shoal_query::{QueryEngine, QueryOptions, QueryResult, QueryStream, RequestOptions, SnapshotSource};
use shoal_segment::durable;
use shoal_stream::{KinesisSource, Source};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Makes the source a table consumes from (Kinesis unless told otherwise).
pub trait SourceFactory: Send + Sync {
    /// A source for the table.
    fn create(&self, table: &TableDefinition) -> Pin<Box<dyn Future<Output = Box<dyn Source>> + Send>>;
}

/// Reads each table's Kinesis stream, as its config says.
#[derive(Debug, Default, Clone, Copy)]
pub struct KinesisSources;

impl SourceFactory for KinesisSources {
    fn create(&self, table: &TableDefinition) -> Pin<Box<dyn Future<Output = Box<dyn Source>> + Send>> {
        let Some(config) = table.config.stream.kinesis.clone() else {
            // A table the app feeds reads its append log; the engine never asks for its source.
            return Box::pin(async { Box::new(crate::append::NoSource) as Box<dyn Source> });
        };
        Box::pin(async move { Box::new(KinesisSource::connect(config).await) as Box<dyn Source> })
    }
}

/// Faults the tests inject (feature `fault-injection`; never in a normal build).
#[cfg(feature = "fault-injection")]
#[derive(Debug, Default)]
pub struct Faults {
    panic_on_record_containing: Option<String>,
    pause_before_commit: Option<std::time::Duration>,
    fired: std::sync::atomic::AtomicBool,
}

#[cfg(feature = "fault-injection")]
impl Faults {
    /// An ingest task panics, once, when it is handed a record whose payload contains `marker`.
    pub fn panic_once_on(mut self, marker: &str) -> Faults {
        self.panic_on_record_containing = Some(marker.to_string());
        self
    }

    /// A seal waits `pause` between writing its segment file and committing it (a window for
    /// a crash test to kill the process in).
    pub fn pause_before_commit(mut self, pause: std::time::Duration) -> Faults {
        self.pause_before_commit = Some(pause);
        self
    }

    pub(crate) fn before_commit(&self) {
        if let Some(pause) = self.pause_before_commit {
            std::thread::sleep(pause);
        }
    }

    pub(crate) fn before_append(&self, records: &[shoal_stream::Record]) {
        let Some(marker) = &self.panic_on_record_containing else { return };
        let hit = records.iter().any(|r| r.data.windows(marker.len()).any(|w| w == marker.as_bytes()));
        if hit && !self.fired.swap(true, Ordering::SeqCst) {
            panic!("injected fault: a record containing {marker:?}");
        }
    }
}

/// Engine settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct EngineOptions {
    /// Query limits.
    pub query: QueryOptions,
    /// Most bytes (estimated) the consuming segments of one table may hold (default 1 GiB).
    pub consuming_memory_cap: usize,
    /// How often retention runs (default 5 minutes).
    pub retention_interval: Duration,
    /// Longest wait between attempts to seal while sealing fails, e.g. on a full disk
    /// (default 5 s; the first retry comes after 100 ms).
    pub seal_retry: Duration,
    /// The background scrub that reads every sealed segment's data after open (and then every
    /// `interval`) to find damage before a query does; None turns it off.
    pub scrub: Option<ScrubOptions>,
    /// Where tables read records from.
    pub sources: Arc<dyn SourceFactory>,
    /// The deep store (None: none): every sealed segment is uploaded to it as Parquet, a lost
    /// data directory is restored from it, and tables with a `deep_store` tier keep their old
    /// segments only there.
    pub deep_store: Option<crate::deep::DeepStoreOptions>,
    /// Faults the tests inject.
    #[cfg(feature = "fault-injection")]
    pub faults: Arc<Faults>,
}

/// Builder methods: `EngineOptions::default().with_…(…)`, so that a setting added later breaks no caller.
impl EngineOptions {
    /// Sets [`EngineOptions::query`].
    pub fn with_query(mut self, query: QueryOptions) -> Self {
        self.query = query;
        self
    }

    /// Sets [`EngineOptions::consuming_memory_cap`].
    pub fn with_consuming_memory_cap(mut self, consuming_memory_cap: usize) -> Self {
        self.consuming_memory_cap = consuming_memory_cap;
        self
    }

    /// Sets [`EngineOptions::retention_interval`].
    pub fn with_retention_interval(mut self, retention_interval: Duration) -> Self {
        self.retention_interval = retention_interval;
        self
    }

    /// Sets [`EngineOptions::seal_retry`].
    pub fn with_seal_retry(mut self, seal_retry: Duration) -> Self {
        self.seal_retry = seal_retry;
        self
    }

    /// Sets [`EngineOptions::scrub`].
    pub fn with_scrub(mut self, scrub: Option<ScrubOptions>) -> Self {
        self.scrub = scrub;
        self
    }

    /// Sets [`EngineOptions::sources`].
    pub fn with_sources(mut self, sources: Arc<dyn SourceFactory>) -> Self {
        self.sources = sources;
        self
    }

    /// Sets [`EngineOptions::deep_store`].
    pub fn with_deep_store(mut self, deep_store: Option<crate::deep::DeepStoreOptions>) -> Self {
        self.deep_store = deep_store;
        self
    }

    /// Sets [`EngineOptions::faults`].
    #[cfg(feature = "fault-injection")]
    pub fn with_faults(mut self, faults: Arc<Faults>) -> Self {
        self.faults = faults;
        self
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            query: QueryOptions::default(),
            consuming_memory_cap: 1 << 30,
            retention_interval: Duration::from_secs(300),
            seal_retry: Duration::from_secs(5),
            scrub: Some(ScrubOptions::default()),
            sources: Arc::new(KinesisSources),
            deep_store: None,
            #[cfg(feature = "fault-injection")]
            faults: Arc::new(Faults::default()),
        }
    }
}

pub(crate) struct Inner {
    data_dir: PathBuf,
    tables: RwLock<BTreeMap<String, Arc<Table>>>,
    query: QueryEngine,
    metrics: Arc<Metrics>,
    options: EngineOptions,
    /// The deep store, opened.
    deep: Option<Arc<crate::deep::DeepStore>>,
    /// Serialises create and drop.
    admin: tokio::sync::Mutex<()>,
    /// The dimension tables' definitions (also those whose file could not be read).
    dimensions: parking_lot::Mutex<BTreeMap<String, crate::dimension::Dimension>>,
    /// The data directory's lock (one process per directory); every table holds it too, so
    /// that it is released only once nothing of the engine can write any more.
    lock: parking_lot::Mutex<Option<Arc<DataDirLock>>>,
}

impl Inner {
    /// The table `name` while it is open (not dropped, the engine not shut down).
    pub(crate) fn live_table(&self, name: &str) -> Option<Arc<Table>> {
        self.tables.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }
}

impl Drop for Inner {
    /// An engine dropped without `shutdown` tells its tables to stop; the data directory stays
    /// locked until their last task is gone.
    fn drop(&mut self) {
        for table in self.tables.get_mut().unwrap_or_else(|p| p.into_inner()).values() {
            table.stop_now();
        }
    }
}

/// An embedded Shoal engine: tables that consume, seal, commit, recover and expire, and SQL
/// over them. Cheap to clone; every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.inner.data_dir)
            .field("tables", &self.tables())
            .finish()
    }
}

/// A table directory's config file; its presence marks a complete table directory.
pub(crate) const TABLE_CONFIG_FILE: &str = "table.json";
pub(crate) const SCHEMA_FILE: &str = "schema.json";
/// A dropped table's directory is first renamed to a name with this prefix, then deleted, so
/// that a crash in between leaves no half-deleted table behind (it is deleted at the next open).
const DROPPED_PREFIX: &str = ".dropped-";
/// The lock file of a data directory.
const LOCK_FILE: &str = "shoal.lock";

/// An exclusive advisory lock (flock) on a data directory's lock file, released when dropped or
/// when the process dies. The file holds the holder's pid, for the error another process gets.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    fn take(data_dir: &Path) -> Result<DataDirLock, Error> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        let path = data_dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        // SAFETY: flock on a file descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io_error(&path, e));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Error::DataDirInUse {
                path: data_dir.to_path_buf(),
                holder: if holder.is_empty() { "unknown".into() } else { holder.to_string() },
            });
        }
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()))
            .and_then(|()| file.flush());
        written.map_err(|e| io_error(&path, e))?;
        Ok(DataDirLock { _file: file })
    }
}

impl Engine {
    /// Opens (or creates) the engine in `data_dir`, reopening every table it holds, with
    /// Kinesis sources and default limits.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<Engine, Error> {
        Engine::open_with(data_dir, EngineOptions::default()).await
    }

    /// Opens the engine with `options`.
    pub async fn open_with(data_dir: impl AsRef<Path>, options: EngineOptions) -> Result<Engine, Error> {
        let data_dir = data_dir.as_ref().to_path_buf();
        durable::create_dir(&data_dir).map_err(|e| io_error(&data_dir, e))?;
        // Before anything in the directory is touched: a second process must not remove the
        // first one's unsealed files as orphans, nor write its manifests.
        let lock = DataDirLock::take(&data_dir)?;
        let tables_dir = data_dir.join("tables");
        durable::create_dir(&tables_dir).map_err(|e| io_error(&tables_dir, e))?;
        let deep = match &options.deep_store {
            Some(o) => Some(Arc::new(crate::deep::DeepStore::open(o).await?)),
            None => None,
        };
        let engine = Engine {
            inner: Arc::new(Inner {
                query: QueryEngine::new(options.query.clone()),
                data_dir,
                tables: RwLock::new(BTreeMap::new()),
                metrics: Arc::new(Metrics::default()),
                options,
                deep,
                admin: tokio::sync::Mutex::new(()),
                dimensions: parking_lot::Mutex::new(BTreeMap::new()),
                lock: parking_lot::Mutex::new(Some(Arc::new(lock))),
            }),
        };
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&tables_dir).map_err(|e| io_error(&tables_dir, e))? {
            let path = entry.map_err(|e| io_error(&tables_dir, e))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with(DROPPED_PREFIX) {
                // A drop that a crash interrupted: finish it.
                tracing::info!(dir = %path.display(), "removing a dropped table's leftover directory");
                std::fs::remove_dir_all(&path).map_err(|e| io_error(&path, e))?;
            } else if path.join(TABLE_CONFIG_FILE).exists() {
                entries.push(path);
            }
        }
        if let Some(deep) = engine.inner.deep.clone() {
            // The tables the deep store holds and the data directory does not (it was lost, or
            // a restore was cut short) come back.
            match deep.tables().await {
                Ok(names) => {
                    for name in names {
                        let dir = tables_dir.join(&name);
                        if entries.contains(&dir) {
                            continue;
                        }
                        // One table the store cannot give back does not keep the others
                        // closed; the next open tries it again.
                        match engine.restore_stored(&deep, &name, &dir).await {
                            Ok(()) => entries.push(dir),
                            Err(e) => {
                                tracing::error!(table = %name, error = %e, "a table cannot be restored from the deep store now; the next open tries again")
                            }
                        }
                    }
                }
                // An outage of the store does not keep the local tables from opening; what
                // only the store holds comes back at the next open.
                Err(e) if !entries.is_empty() => {
                    tracing::warn!(error = %e, "the deep store cannot be listed: no table is restored from it now");
                }
                Err(e) => {
                    engine.shutdown().await;
                    return Err(e);
                }
            }
        }
        entries.sort();
        // Every table is opened before any starts: when one cannot be opened, none has begun
        // consuming, sealing or uploading, and nothing of the failed open goes on writing.
        let mut opened = Vec::with_capacity(entries.len());
        for dir in entries {
            let read = |name: &str| -> Result<Value, Error> {
                let path = dir.join(name);
                let text = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
                serde_json::from_slice(&text).map_err(|e| Error::Corrupt { path, reason: e.to_string() })
            };
            let started = Instant::now();
            let table = match (read(TABLE_CONFIG_FILE), read(SCHEMA_FILE)) {
                (Ok(config), Ok(schema)) => match TableDefinition::from_json(&config, &schema) {
                    Ok(definition) => engine.open_table(definition, dir).await,
                    Err(e) => Err(e.into()),
                },
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            match table {
                Ok(table) => opened.push(table),
                Err(e) => {
                    engine.shutdown().await;
                    return Err(e);
                }
            }
            tracing::info!(elapsed = ?started.elapsed(), "table reopened");
        }
        for table in opened {
            engine.launch(table).await;
        }
        engine.load_dimensions().await?;
        Ok(engine)
    }

    /// Loads the dimension tables kept in the data directory. One whose file cannot be read
    /// is left out of queries (an error is logged) until `reload_dimension_table` reads it.
    async fn load_dimensions(&self) -> Result<(), Error> {
        let dir = self.inner.data_dir.join(crate::dimension::DIMENSIONS_DIR);
        if !dir.exists() {
            return Ok(());
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io_error(&dir, e))? {
            let path = entry.map_err(|e| io_error(&dir, e))?.path();
            // Anything but a table's directory (a file another tool left) is left alone.
            if path.is_dir() {
                dirs.push(path);
            }
        }
        dirs.sort();
        for path in dirs {
            // One dimension table that cannot be loaded keeps neither the realtime tables nor
            // the other dimension tables from opening.
            let dimension = match crate::dimension::Dimension::load(&path) {
                Ok(Some(d)) => d,
                Ok(None) => {
                    // A create or drop that a crash interrupted (its source file is written
                    // last at a create and deleted first at a drop).
                    if let Err(e) = std::fs::remove_dir_all(&path) {
                        tracing::warn!(dir = %path.display(), error = %e, "an incomplete dimension table's directory could not be removed");
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(dir = %path.display(), error = %e, "a dimension table's definition cannot be read: it is left out");
                    continue;
                }
            };
            match dimension.read().await {
                Ok(table) => {
                    if let Err(e) = self.inner.query.register_dimension(&dimension.name, Arc::new(table)) {
                        tracing::error!(table = %dimension.name, error = %e, "a dimension table cannot be registered: it is left out");
                        continue;
                    }
                }
                Err(e) => {
                    tracing::error!(table = %dimension.name, error = %e, "a dimension table's file cannot be read: the table is left out until it is reloaded")
                }
            }
            self.inner.dimensions.lock().insert(dimension.name.clone(), dimension);
        }
        Ok(())
    }

    async fn start_table(&self, definition: TableDefinition, dir: PathBuf) -> Result<Arc<Table>, Error> {
        let table = self.open_table(definition, dir).await?;
        self.launch(Arc::clone(&table)).await;
        Ok(table)
    }

    /// Opens a table's directory; nothing runs yet.
    async fn open_table(&self, definition: TableDefinition, dir: PathBuf) -> Result<Arc<Table>, Error> {
        let name = definition.config.name.clone();
        let o = &self.inner.options;
        let dir_lock = self.inner.lock.lock().clone().ok_or(Error::ShutDown)?;
        let options = TableOptions {
            dir_lock,
            consuming_memory_cap: o.consuming_memory_cap,
            retention_interval: o.retention_interval,
            seal_retry: o.seal_retry,
            scrub: o.scrub.clone(),
            sources: Arc::clone(&o.sources),
            deep_store: self.inner.deep.clone(),
            #[cfg(feature = "fault-injection")]
            faults: Arc::clone(&o.faults),
        };
        let metrics = self.inner.metrics.table(&name);
        let table = {
            let (name, definition) = (name.clone(), definition.clone());
            tokio::task::spawn_blocking(move || Table::open(name, definition, dir, metrics, options))
                .await
                .map_err(|e| Error::Task(format!("opening a table: {e}")))??
        };
        Ok(Arc::new(table))
    }

    /// Starts an opened table (consumption, retention, scrub, uploads) and makes it queryable.
    async fn launch(&self, table: Arc<Table>) {
        let source = table.source().await;
        table.start(source);
        let name = table.name.clone();
        self.inner.query.register(
            &name,
            Arc::clone(&table.layout),
            Arc::clone(&table) as Arc<dyn SnapshotSource>,
        );
        self.inner.tables.write().unwrap_or_else(|p| p.into_inner()).insert(name, table);
    }

    /// Validates a Pinot table config and schema, persists both and starts consuming.
    pub async fn create_table(&self, table_config: &Value, schema: &Value) -> Result<(), Error> {
        let _admin = self.inner.admin.lock().await;
        let definition = TableDefinition::from_json(table_config, schema)?;
        let name = definition.config.name.clone();
        if self.name_taken(&name) {
            return Err(Error::TableExists(name));
        }
        if self.inner.lock.lock().is_none() {
            return Err(Error::ShutDown);
        }
        let dir = self.inner.data_dir.join("tables").join(&name);
        for w in &definition.warnings {
            tracing::warn!(table = %name, "{w}");
        }
        let held = match self.inner.deep.clone() {
            Some(deep) if !dir.join(TABLE_CONFIG_FILE).exists() => {
                crate::deep::restore::manifest(&deep, &name).await?.map(|m| (deep, m))
            }
            _ => None,
        };
        if let Some((deep, manifest)) = held {
            // The deep store holds the table: its segments and checkpoints come back, under
            // the config given now (its copy there has its secrets masked).
            let given = Restoring { table_config, schema, definition: &definition, manifest };
            self.restore_from_deep(&deep, &name, &dir, given).await?;
            self.start_table(definition, dir).await?;
            return Ok(());
        }
        durable::create_dir(&dir).map_err(|e| io_error(&dir, e))?;
        write_private(&dir.join(SCHEMA_FILE), schema)?;
        // The table config last: its presence marks a complete table directory.
        write_private(&dir.join(TABLE_CONFIG_FILE), definition.config.original_json())?;
        self.start_table(definition, dir).await?;
        Ok(())
    }

    /// Rebuilds a table's directory from the deep store under the store's own copy of its
    /// config (its masked secrets left out).
    async fn restore_stored(
        &self,
        deep: &crate::deep::DeepStore,
        name: &str,
        dir: &Path,
    ) -> Result<(), Error> {
        let (table_config, schema) = crate::deep::restore::definition(deep, name).await?;
        let definition = TableDefinition::from_json(&table_config, &schema)?;
        let manifest = crate::deep::restore::manifest(deep, name)
            .await?
            .ok_or_else(|| Error::DeepStore(format!("deep store {}: {name} has no manifest", deep.url())))?;
        let given =
            Restoring { table_config: &table_config, schema: &schema, definition: &definition, manifest };
        self.restore_from_deep(deep, name, dir, given).await
    }

    /// Rebuilds a table's directory from the deep store: its segments (the cold tier's stay in
    /// the store), its manifest, then its schema and config, the config last.
    async fn restore_from_deep(
        &self,
        deep: &crate::deep::DeepStore,
        name: &str,
        dir: &Path,
        given: Restoring<'_>,
    ) -> Result<(), Error> {
        let started = Instant::now();
        let Restoring { table_config, schema, definition, manifest } = given;
        if dir.exists() {
            // A table directory without its config: an interrupted create or restore.
            std::fs::remove_dir_all(dir).map_err(|e| io_error(dir, e))?;
        }
        durable::create_dir(dir).map_err(|e| io_error(dir, e))?;
        let layout = crate::table::layout_of(definition);
        let restored =
            crate::deep::restore::restore(deep, name, manifest, dir, &layout, definition.config.cold_after)
                .await?;
        write_private(&dir.join(SCHEMA_FILE), schema)?;
        write_private(&dir.join(TABLE_CONFIG_FILE), table_config)?;
        tracing::info!(
            table = name,
            store = deep.url(),
            local = restored.local,
            cold = restored.cold,
            rows = restored.rows,
            elapsed = ?started.elapsed(),
            "table restored from the deep store"
        );
        Ok(())
    }

    /// Stops a table and deletes its data.
    pub async fn drop_table(&self, name: &str) -> Result<(), Error> {
        let _admin = self.inner.admin.lock().await;
        if self.inner.lock.lock().is_none() {
            return Err(Error::ShutDown);
        }
        let table = self.table(name)?;
        self.inner.query.deregister(name);
        self.inner.tables.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        table.stop().await;
        if let Some(deep) = &self.inner.deep {
            // The deep store's manifest goes first: without it the store no longer holds the
            // table, and neither an open nor a create brings it back. When it cannot be
            // deleted, the drop fails and the table goes on.
            if let Err(e) = deep.delete(&deep.path(&table.name, crate::table::DEEP_MANIFEST)).await {
                let restarted = self.start_table(table.definition.clone(), table.dir().to_path_buf()).await;
                if let Err(again) = restarted {
                    tracing::error!(table = %table.name, error = %again, "the table could not be started again after a failed drop");
                }
                return Err(e);
            }
        }
        self.inner.metrics.remove(name);
        // Renamed away first (durably), then deleted: a crash in between leaves a directory the
        // next open finishes deleting, never a table with half its files.
        let dir = table.dir().to_path_buf();
        let away = dir.with_file_name(format!("{DROPPED_PREFIX}{}-{}", table.name, shoal_stream::now_ms()));
        durable::rename(&dir, &away).map_err(|e| io_error(&dir, e))?;
        std::fs::remove_dir_all(&away).map_err(|e| io_error(&away, e))?;
        if let Some(deep) = &self.inner.deep {
            // The objects: left ones are named by no manifest, and the next uploader of a table
            // of this name deletes them. The manifest once more, in case an upload's last write
            // landed after the first delete.
            let objects = deep.list_table(&table.name).await.unwrap_or_default();
            for path in objects {
                if let Err(e) = deep.delete(&path).await {
                    tracing::warn!(table = %table.name, error = %e, "a dropped table's object is left in the deep store");
                }
            }
            if let Err(e) = deep.delete(&deep.path(&table.name, crate::table::DEEP_MANIFEST)).await {
                tracing::warn!(table = %table.name, error = %e, "a dropped table's deep-store manifest could not be deleted again");
            }
        }
        Ok(())
    }

    /// A realtime table as a DataFusion `TableProvider`, for an app's own `SessionContext`
    /// (to join it with the app's tables, say).
    ///
    /// Each scan takes a fresh snapshot of the table, with the pruning, statistics and
    /// consistency of Shoal's own queries: a seal swaps a consuming segment for its sealed file
    /// in one step, so a scan never sees a row twice nor misses one. While the table seals or
    /// expires segments, a scan already planned reads the segments it took (an expired one
    /// stays mapped until the scan ends); the next scan sees the change. Once the table is
    /// dropped or the engine shut down, scanning fails with an error naming the table (the
    /// provider holds neither the table nor the engine alive). The app's context has none of
    /// Shoal's query limits (time, memory, rows): set its own.
    ///
    /// ```no_run
    /// # async fn demo(engine: shoal::Engine) -> Result<(), Box<dyn std::error::Error>> {
    /// let ctx = datafusion::prelude::SessionContext::new();
    /// ctx.register_table("events", engine.table_provider("events")?)?;
    /// shoal::register_functions(&ctx);
    /// let top = ctx.sql("SELECT country, count(*) FROM events GROUP BY country").await?.collect().await?;
    /// # Ok(()) }
    /// ```
    pub fn table_provider(&self, name: &str) -> Result<Arc<dyn datafusion::catalog::TableProvider>, Error> {
        let table = self.table(name)?;
        Ok(Arc::new(crate::embed::TableHandle::new(Arc::downgrade(&self.inner), &table)))
    }

    /// Makes an app's own table (a Parquet file, a `MemTable`, a database table: any DataFusion
    /// `TableProvider`) queryable in Shoal's SQL as `name`, beside the realtime tables, also
    /// through the server. The name of a realtime table (or its `_REALTIME` alias) is refused.
    ///
    /// ```no_run
    /// # async fn demo(engine: shoal::Engine, regions: arrow::array::RecordBatch) -> Result<(), Box<dyn std::error::Error>> {
    /// let table = datafusion::datasource::MemTable::try_new(regions.schema(), vec![vec![regions]])?;
    /// engine.register_table("regions", std::sync::Arc::new(table))?;
    /// engine.sql("SELECT r.region, count(*) FROM events e JOIN regions r ON e.country = r.country GROUP BY r.region").await?;
    /// # Ok(()) }
    /// ```
    pub fn register_table(
        &self,
        name: &str,
        provider: Arc<dyn datafusion::catalog::TableProvider>,
    ) -> Result<(), Error> {
        if self.name_taken(name) {
            return Err(Error::TableExists(name.to_string()));
        }
        Ok(self.inner.query.register_external(name, provider)?)
    }

    /// Removes an app's table registered with [`Engine::register_table`].
    pub fn deregister_table(&self, name: &str) -> Result<(), Error> {
        if self.dimension(name).is_ok() {
            return Err(Error::Invalid(format!(
                "{name:?} is a dimension table: Engine::drop_dimension_table removes it"
            )));
        }
        if self.inner.query.deregister_external(name) {
            Ok(())
        } else {
            Err(Error::NoSuchTable(name.to_string()))
        }
    }

    /// Appends records to a table the app feeds: one whose `streamConfigs` say
    /// `"streamType": "append"` instead of naming a Kinesis stream. Each record is one message
    /// (JSON, as the table's decoder reads it); the records go through the same decode,
    /// transforms, seal and commit as a stream's.
    ///
    /// **Durability.** When `append` returns `Ok`, the records are written and fsynced to the
    /// table's append log: they survive a crash of the process (or of the machine, on a disk
    /// that honours fsync), and after a restart the table reads every record after its last
    /// commit from the log again, each once. The records of one call are durable together:
    /// a crash during the call keeps all of them or none. When `append` returns an error,
    /// none of them was acknowledged (and none is kept, unless the error came after the write,
    /// from the sync). The log is the table's only copy of rows not yet sealed: a table
    /// restored from the deep store (its directory lost) has what was sealed and uploaded.
    ///
    /// **Visibility.** The rows become queryable as soon as the table's ingest loop takes them,
    /// normally within milliseconds; [`Appended::queryable`] waits for that. A paused table
    /// accepts appends and reads them at its resume.
    ///
    /// ```no_run
    /// # async fn demo(engine: shoal::Engine) -> Result<(), shoal::Error> {
    /// let appended = engine.append("clicks", [r#"{"user":"ann","ts":1764460800000}"#]).await?;
    /// appended.queryable().await?; // durable already; now queries see it too
    /// # Ok(()) }
    /// ```
    pub async fn append<R: AsRef<[u8]>>(
        &self,
        table: &str,
        records: impl IntoIterator<Item = R>,
    ) -> Result<Appended, Error> {
        if self.inner.lock.lock().is_none() {
            return Err(Error::ShutDown);
        }
        let table = self.table(table)?;
        let Some(log) = table.append_log.clone() else {
            return Err(Error::NotAppendable(table.name.clone()));
        };
        let records: Vec<bytes::Bytes> =
            records.into_iter().map(|r| bytes::Bytes::copy_from_slice(r.as_ref())).collect();
        let size: usize = records.iter().map(|r| r.len() + 4).sum();
        if size > crate::append::BATCH_LIMIT {
            return Err(Error::TooLarge { bytes: size, limit: crate::append::BATCH_LIMIT });
        }
        let count = records.len();
        if count == 0 {
            return Ok(Appended {
                table: table.name.clone(),
                records: 0,
                first: None,
                last: None,
                progress: None,
            });
        }
        let keep_after = table.append_keep_after();
        let (first, last) = tokio::task::spawn_blocking(move || {
            let written = log.append(&records, shoal_stream::now_ms());
            log.trim(keep_after);
            written
        })
        .await
        .map_err(|e| Error::Task(format!("appending: {e}")))??;
        Ok(Appended {
            table: table.name.clone(),
            records: count,
            first: Some(first),
            last: Some(last),
            progress: Some(table.append_progress.subscribe()),
        })
    }

    /// Creates a Pinot dimension table: `table_config` is an OFFLINE table config with
    /// `"isDimTable": true` (and, optionally, `dimensionTableConfig.errorOnDuplicatePrimaryKey`),
    /// `schema` a Pinot schema with `primaryKeyColumns`, and `file` the app's data: JSON lines
    /// (`.json`, `.jsonl`, `.ndjson`; or a `.json` array of objects), CSV with a header row
    /// (`.csv`) or Parquet (`.parquet`). JSON goes through the same decoder as a stream's records;
    /// CSV and Parquet columns are cast to the schema's types. A missing or null value becomes
    /// the column's default null value, as Pinot stores it; a record that cannot be read fails
    /// the create (nothing is kept). Rows with a primary key an earlier row has replace it.
    ///
    /// The table is held in memory and answers Pinot's
    /// `LOOKUP('table', 'column', 'keyColumn', value, ...)` and ordinary SQL. The definition is
    /// kept in the data directory and the file (a relative path is taken from the current
    /// directory, and kept absolute) is read again at every open; the app owns the file, and [`Engine::reload_dimension_table`] reads it again after it changes. Returns
    /// the rows read.
    ///
    /// ```no_run
    /// # async fn demo(engine: shoal::Engine) -> Result<(), shoal::Error> {
    /// let config = serde_json::json!({"tableName": "regions", "tableType": "OFFLINE", "isDimTable": true});
    /// let schema = serde_json::json!({
    ///     "schemaName": "regions",
    ///     "dimensionFieldSpecs": [{"name": "country", "dataType": "STRING"}, {"name": "region", "dataType": "STRING"}],
    ///     "primaryKeyColumns": ["country"]
    /// });
    /// engine.create_dimension_table(&config, &schema, "/srv/app/regions.csv").await?;
    /// engine.sql("SELECT LOOKUP('regions', 'region', 'country', country) AS region, count(*) FROM events GROUP BY 1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn create_dimension_table(
        &self,
        table_config: &Value,
        schema: &Value,
        file: impl AsRef<Path>,
    ) -> Result<usize, Error> {
        let _admin = self.inner.admin.lock().await;
        if self.inner.lock.lock().is_none() {
            return Err(Error::ShutDown);
        }
        let file = std::path::absolute(file.as_ref()).map_err(|e| io_error(file.as_ref(), e))?;
        let dimension = crate::dimension::Dimension::parse(table_config, schema, &file)?;
        let name = dimension.name.clone();
        if self.name_taken(&name) {
            return Err(Error::TableExists(name));
        }
        let table = dimension.read().await?;
        let rows = table.num_rows();
        let dir = self.inner.data_dir.join(crate::dimension::DIMENSIONS_DIR).join(&name);
        dimension.save(&dir)?;
        if let Err(e) = self.inner.query.register_dimension(&name, Arc::new(table)) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
        self.inner.dimensions.lock().insert(name, dimension);
        Ok(rows)
    }

    /// Reads a dimension table's file again and swaps the table in. Queries that scan the
    /// table itself finish on the rows they started with; `LOOKUP` reads the table as it is
    /// for each batch, so a query running across the reload sees the new rows from then on.
    /// When the file cannot be read, the old rows stay and the error says why. Returns the
    /// rows read.
    pub async fn reload_dimension_table(&self, name: &str) -> Result<usize, Error> {
        // Under the admin lock: a drop or a create of the name waits for the reload.
        let _admin = self.inner.admin.lock().await;
        let dimension = self.dimension(name)?;
        let table = dimension.read().await?;
        let rows = table.num_rows();
        self.inner.query.register_dimension(&dimension.name, Arc::new(table))?;
        Ok(rows)
    }

    /// Removes a dimension table (the app's file stays).
    pub async fn drop_dimension_table(&self, name: &str) -> Result<(), Error> {
        let _admin = self.inner.admin.lock().await;
        if self.inner.lock.lock().is_none() {
            return Err(Error::ShutDown);
        }
        let dimension = self.dimension(name)?;
        let dir = self.inner.data_dir.join(crate::dimension::DIMENSIONS_DIR).join(&dimension.name);
        // The source file first, durably: a crash after it leaves a directory the next open
        // removes, never a table half deleted.
        crate::dimension::Dimension::forget(&dir)?;
        std::fs::remove_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        self.inner.query.deregister_dimension(&dimension.name);
        self.inner.dimensions.lock().remove(&dimension.name);
        Ok(())
    }

    /// The dimension tables' names (also those whose file could not be read at the open).
    pub fn dimension_tables(&self) -> Vec<String> {
        self.inner.dimensions.lock().keys().cloned().collect()
    }

    /// Whether a realtime table (or its `_REALTIME` alias), an app's table or a dimension
    /// table has the name, in any case.
    fn name_taken(&self, name: &str) -> bool {
        let lower = name.to_lowercase();
        let realtime = self.tables().iter().any(|t| {
            let t = t.to_lowercase();
            t == lower || format!("{t}_realtime") == lower
        });
        realtime
            || self.inner.query.has_external(name)
            || self.inner.dimensions.lock().keys().any(|d| d.to_lowercase() == lower)
    }

    fn dimension(&self, name: &str) -> Result<crate::dimension::Dimension, Error> {
        let name = name.strip_suffix("_OFFLINE").unwrap_or(name);
        self.inner
            .dimensions
            .lock()
            .values()
            .find(|d| d.name.eq_ignore_ascii_case(name))
            .cloned()
            .ok_or_else(|| Error::NoSuchTable(name.to_string()))
    }

    /// Registers Shoal's Pinot functions in an app's own DataFusion context, with `LOOKUP`
    /// over this engine's dimension tables (as they are when each query is planned).
    pub fn register_functions(&self, ctx: &datafusion::prelude::SessionContext) {
        shoal_query::register_pinot_functions(ctx);
        ctx.register_udf(self.inner.query.lookup_udf());
    }

    /// The tables' names.
    pub fn tables(&self) -> Vec<String> {
        self.inner.tables.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    fn table(&self, name: &str) -> Result<Arc<Table>, Error> {
        let name = name.strip_suffix("_REALTIME").unwrap_or(name);
        self.inner
            .tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NoSuchTable(name.to_string()))
    }

    /// A table's definition (config and schema).
    pub fn definition(&self, name: &str) -> Result<TableDefinition, Error> {
        Ok(self.table(name)?.definition.clone())
    }

    /// Pauses a table's consumption: its consuming segments commit, nothing more is read, and
    /// the pause lasts across restarts until `resume_consumption`.
    pub async fn pause_consumption(&self, name: &str, comment: Option<String>) -> Result<PauseStatus, Error> {
        let _admin = self.inner.admin.lock().await;
        self.table(name)?.pause(comment).await
    }

    /// Resumes a paused table's consumption from its last commit.
    pub async fn resume_consumption(&self, name: &str) -> Result<PauseStatus, Error> {
        let _admin = self.inner.admin.lock().await;
        self.table(name)?.resume().await
    }

    /// Whether a table's consumption is paused.
    pub fn pause_status(&self, name: &str) -> Result<PauseStatus, Error> {
        Ok(self.table(name)?.pause_status())
    }

    /// Commits every consuming segment of a table that holds rows, now; the names of the
    /// segments committed.
    pub async fn force_commit(&self, name: &str) -> Result<Vec<String>, Error> {
        self.table(name)?.force_commit().await
    }

    /// A table's status: per shard state, checkpoint, lag and rows; its segments.
    pub fn table_status(&self, name: &str) -> Result<TableStatus, Error> {
        Ok(self.table(name)?.status())
    }

    /// Runs read-only SQL and returns Arrow batches.
    pub async fn sql(&self, query: &str) -> Result<Vec<RecordBatch>, Error> {
        Ok(self.sql_result(query).await?.batches)
    }

    /// Runs read-only SQL and returns the result with its scan statistics.
    pub async fn sql_result(&self, query: &str) -> Result<QueryResult, Error> {
        self.sql_with(query, &RequestOptions::default()).await
    }

    /// Runs read-only SQL with the options of a Pinot request (its `queryOptions` and `trace`)
    /// and returns the result with its scan statistics.
    pub async fn sql_with(&self, query: &str, request: &RequestOptions) -> Result<QueryResult, Error> {
        let started = Instant::now();
        let result = self.inner.query.execute_with(query, request).await;
        self.count_query(started, result.is_ok());
        Ok(result?)
    }

    /// Runs read-only SQL and returns the rows as a stream of Arrow batches.
    pub async fn sql_stream(&self, query: &str) -> Result<QueryStream, Error> {
        Ok(self.inner.query.stream(query).await?)
    }

    fn count_query(&self, started: Instant, ok: bool) {
        let m = &self.inner.metrics;
        m.queries.fetch_add(1, Ordering::Relaxed);
        m.query_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if !ok {
            m.query_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Runs retention on every table now; returns the segments removed.
    pub fn apply_retention(&self) -> Result<usize, Error> {
        if self.inner.lock.lock().is_none() {
            return Err(Error::ShutDown);
        }
        let tables: Vec<Arc<Table>> =
            self.inner.tables.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        tables.iter().map(|t| t.apply_retention()).sum()
    }

    /// Runs upsert compaction (the tables' `UpsertCompactionTask` settings) now, besides its
    /// run after each retention pass; returns the segments rewritten or dropped.
    pub fn compact(&self) -> Result<usize, Error> {
        if self.inner.lock.lock().is_none() {
            return Err(Error::ShutDown);
        }
        let tables: Vec<Arc<Table>> =
            self.inner.tables.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        tables.iter().map(|t| t.compact()).sum()
    }

    /// Stops every reader and ingestion task; what is committed stays committed, and rows
    /// only in memory are read again from the stream after the next open.
    pub async fn shutdown(&self) {
        let _admin = self.inner.admin.lock().await;
        let tables: Vec<Arc<Table>> =
            self.inner.tables.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for t in &tables {
            t.stop().await;
        }
        // The tables go (their queries with them): once the last reference to them is gone,
        // nothing can write to the directory, and the lock is released for another process.
        for t in &tables {
            self.inner.query.deregister(&t.name);
        }
        self.inner.tables.write().unwrap_or_else(|p| p.into_inner()).clear();
        self.inner.lock.lock().take();
    }
}

/// A table to restore under the config a caller gave, with the deep-store manifest read.
struct Restoring<'a> {
    table_config: &'a Value,
    schema: &'a Value,
    definition: &'a TableDefinition,
    manifest: crate::manifest::Manifest,
}

/// Writes JSON readable by the owner only (it may hold credentials).
pub(crate) fn write_private(path: &Path, value: &Value) -> Result<(), Error> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Corrupt { path: path.to_path_buf(), reason: e.to_string() })?;
    durable::write_atomic(path, &bytes, 0o600).map_err(|e| io_error(path, e.source))
}
