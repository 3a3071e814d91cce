//! A realtime table as an app's own DataFusion sees it ([`crate::Engine::table_provider`]):
//! each scan finds the table by name and scans a fresh snapshot through Shoal's provider.

use crate::engine::Inner;
use crate::table::Table;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use shoal_query::{ShoalTable, SnapshotSource};
use shoal_segment::TableLayout;
use std::sync::{Arc, Weak};

/// A table of an engine, held by name: it keeps neither the table nor the engine alive.
#[derive(Debug)]
pub(crate) struct TableHandle {
    engine: Weak<Inner>,
    name: String,
    layout: Arc<TableLayout>,
}

impl TableHandle {
    pub(crate) fn new(engine: Weak<Inner>, table: &Table) -> TableHandle {
        TableHandle { engine, name: table.name.clone(), layout: Arc::clone(&table.layout) }
    }

    /// The table, while it is open and the same table (not dropped and created again).
    fn provider(&self) -> Result<ShoalTable> {
        let table = self
            .engine
            .upgrade()
            .and_then(|engine| engine.live_table(&self.name))
            .filter(|t| Arc::ptr_eq(&t.layout, &self.layout))
            .ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "Shoal table {:?} was dropped or its engine shut down",
                    self.name
                ))
            })?;
        Ok(ShoalTable::unrecorded(Arc::clone(&self.layout), table as Arc<dyn SnapshotSource>))
    }
}

#[async_trait]
impl TableProvider for TableHandle {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.layout.arrow)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        match self.provider() {
            Ok(p) => p.supports_filters_pushdown(filters),
            // Planned against a table that is gone: the scan says so.
            Err(_) => Ok(vec![TableProviderFilterPushDown::Unsupported; filters.len()]),
        }
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.provider()?.scan(state, projection, filters, limit).await
    }
}
