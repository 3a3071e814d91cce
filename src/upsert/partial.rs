//! PARTIAL upsert: a new version of a key is merged with the key's current row, column by
//! column, by the column's strategy (Pinot's `PartialUpsertHandler` and its mergers).

use crate::config::UpsertConfig;
use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::interleave;
use datafusion::common::ScalarValue;
use shoal_segment::TableLayout;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

/// Pinot's `UpsertConfig.Strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Overwrite,
    ForceOverwrite,
    Ignore,
    Increment,
    Append,
    Union,
    Max,
    Min,
}

impl Strategy {
    fn parse(name: &str) -> Strategy {
        match name {
            "FORCE_OVERWRITE" => Strategy::ForceOverwrite,
            "IGNORE" => Strategy::Ignore,
            "INCREMENT" => Strategy::Increment,
            "APPEND" => Strategy::Append,
            "UNION" => Strategy::Union,
            "MAX" => Strategy::Max,
            "MIN" => Strategy::Min,
            // The config check allows only Pinot's names; OVERWRITE is the default.
            _ => Strategy::Overwrite,
        }
    }
}

/// The key's current row a new version merges with.
pub(crate) enum Prev {
    /// A row of a segment, as a batch of one row.
    Stored(RecordBatch),
    /// A row earlier in the same batch (merged already, when it merged).
    InBatch(usize),
}

/// How each column merges.
#[derive(Debug)]
pub(crate) struct Merger {
    /// Per column: its strategy, or None for primary-key and comparison columns (never merged).
    strategies: Vec<Option<Strategy>>,
    /// Comparison columns: a null one takes the current row's value.
    cmp: Vec<usize>,
}

impl Merger {
    pub(crate) fn new(u: &UpsertConfig, layout: &TableLayout, pk: &[usize], cmp: &[usize]) -> Merger {
        let default = Strategy::parse(&u.default_partial_strategy);
        let strategies = layout
            .arrow
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if pk.contains(&i) || cmp.contains(&i) {
                    return None;
                }
                let named = u.partial_strategies.iter().find(|(c, _)| c == f.name());
                Some(named.map_or(default, |(_, s)| Strategy::parse(s)))
            })
            .collect();
        Merger { strategies, cmp: cmp.to_vec() }
    }

    /// `batch` with the rows of `merges` (a row and the key's current row, in row order)
    /// merged.
    pub(crate) fn merge(&self, batch: &RecordBatch, merges: Vec<(usize, Prev)>) -> RecordBatch {
        let mut merged: HashMap<usize, Vec<ScalarValue>> = HashMap::new();
        let mut order = Vec::new();
        for (row, prev) in merges {
            let Ok(new) = row_values(batch, row) else { continue };
            let prev = match prev {
                Prev::Stored(b) => row_values(&b, 0),
                Prev::InBatch(r) => merged.get(&r).cloned().map_or_else(|| row_values(batch, r), Ok),
            };
            let Ok(prev) = prev else { continue };
            let values = self.merge_row(prev, new);
            if merged.insert(row, values).is_none() {
                order.push(row);
            }
        }
        if merged.is_empty() {
            return batch.clone();
        }
        let position: HashMap<usize, usize> = order.iter().enumerate().map(|(k, r)| (*r, k)).collect();
        let indices: Vec<(usize, usize)> =
            (0..batch.num_rows()).map(|r| position.get(&r).map_or((0, r), |k| (1, *k))).collect();
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .enumerate()
            .map(|(c, column)| {
                let values = order.iter().map(|r| merged[r][c].clone());
                match ScalarValue::iter_to_array(values) {
                    Ok(m) if m.data_type() == column.data_type() => {
                        interleave(&[column.as_ref(), m.as_ref()], &indices)
                            .unwrap_or_else(|_| Arc::clone(column))
                    }
                    _ => Arc::clone(column),
                }
            })
            .collect();
        RecordBatch::try_new(batch.schema(), columns).unwrap_or_else(|_| batch.clone())
    }

    /// One merged row (PartialUpsertColumnarMerger.merge).
    fn merge_row(&self, prev: Vec<ScalarValue>, new: Vec<ScalarValue>) -> Vec<ScalarValue> {
        new.into_iter()
            .zip(prev)
            .enumerate()
            .map(|(c, (new, prev))| match self.strategies[c] {
                None if self.cmp.contains(&c) && new.is_null() => prev,
                None => new,
                Some(Strategy::ForceOverwrite) => new,
                Some(Strategy::Overwrite) => {
                    if new.is_null() {
                        prev
                    } else {
                        new
                    }
                }
                Some(s) => {
                    if prev.is_null() {
                        new
                    } else if new.is_null() {
                        prev
                    } else {
                        merge_values(s, prev, new)
                    }
                }
            })
            .collect()
    }
}

/// Both values set: the strategy's result.
fn merge_values(strategy: Strategy, prev: ScalarValue, new: ScalarValue) -> ScalarValue {
    match strategy {
        Strategy::Ignore => prev,
        Strategy::Increment => prev.add(&new).unwrap_or(new),
        Strategy::Max => {
            if prev.partial_cmp(&new) == Some(Ordering::Greater) {
                prev
            } else {
                new
            }
        }
        Strategy::Min => {
            if prev.partial_cmp(&new) == Some(Ordering::Less) {
                prev
            } else {
                new
            }
        }
        Strategy::Append | Strategy::Union => {
            let (Some(mut values), Some(more), Some(item)) =
                (list_values(&prev), list_values(&new), list_item(&prev))
            else {
                return new;
            };
            values.extend(more);
            if strategy == Strategy::Union {
                // Java's TreeSet: sorted, each value once.
                values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
                values.dedup();
            }
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &item))
        }
        Strategy::Overwrite | Strategy::ForceOverwrite => new,
    }
}

fn list_values(v: &ScalarValue) -> Option<Vec<ScalarValue>> {
    let ScalarValue::List(list) = v else { return None };
    ScalarValue::convert_array_to_scalar_vec(list.as_ref()).ok()?.into_iter().next().flatten()
}

fn list_item(v: &ScalarValue) -> Option<arrow::datatypes::DataType> {
    match v.data_type() {
        arrow::datatypes::DataType::List(f) => Some(f.data_type().clone()),
        _ => None,
    }
}

fn row_values(batch: &RecordBatch, row: usize) -> datafusion::common::Result<Vec<ScalarValue>> {
    batch.columns().iter().map(|c| ScalarValue::try_from_array(c, row)).collect()
}
