//! Pinot's SQL dialect around DataFusion's: query options from every place Pinot reads them
//! (leading `SET key = value;` statements, a trailing `OPTION(k=v, ...)` clause and the
//! request's `queryOptions`), the broker's default LIMIT, and result columns named and typed as
//! Pinot's single-stage engine names and types them.

use crate::engine::QueryError;
use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    LimitClause, Query, SelectItem, Set, SetExpr, Statement, UnaryOperator, Value,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// What a Pinot client sends with its SQL, besides the SQL itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestOptions {
    /// The request body's `queryOptions`: `"k1=v1;k2=v2"` (pinot-common `RequestUtils.java`,
    /// `getOptionsFromString`). The `pinotdb` client sends `useMultistageEngine=true` here.
    pub query_options: Option<String>,
    /// The body's `"trace": true`, or `?trace=true` on a GET (pinot-common `RequestUtils.java`
    /// turns it into the option `trace=true`).
    pub trace: bool,
}

/// Builder methods: `RequestOptions::default().with_…(…)`, so that a setting added later breaks no caller.
impl RequestOptions {
    /// Sets [`RequestOptions::query_options`].
    pub fn with_query_options(mut self, query_options: Option<String>) -> Self {
        self.query_options = query_options;
        self
    }

    /// Sets [`RequestOptions::trace`].
    pub fn with_trace(mut self, trace: bool) -> Self {
        self.trace = trace;
        self
    }
}

/// The query options one query runs with, merged from its SET statements, its OPTION clause and
/// its request, in Pinot's order of precedence (pinot-common `CalciteSqlParser.java` and
/// `SqlNodeAndOptions.setExtraOptions`: SET first, then OPTION(...), then the request's
/// `queryOptions`, then its `trace`; a key already set keeps its value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinotOptions {
    /// Every option, by its canonical name (a known key matches without regard to case, as
    /// pinot-common `QueryOptionsUtils.resolveCaseInsensitiveOptions` does).
    pub values: BTreeMap<String, String>,
    /// `timeoutMs`, when given.
    pub timeout: Option<Duration>,
    /// `trace=true`: the response carries `traceInfo`.
    pub trace: bool,
    /// Keys that are no Pinot query option: accepted and ignored, and logged once per key
    /// (pinot-common `QueryOptionsUtils.validateSqlQueryOptions` in its WARN mode; Pinot never
    /// puts them in the response).
    pub ignored: Vec<String>,
}

/// The query option keys Pinot knows: every `QueryOptionKey` in pinot-spi
/// `CommonConstants.java`, and `trace` and `database`, which pinot-common
/// `QueryOptionsUtils.java` accepts besides them.
const PINOT_OPTION_KEYS: &[&str] = &[
    "timeoutMs",
    "materializedViewRewrite",
    "enableMaterializedViewRewrite",
    "extraPassiveTimeoutMs",
    "skipUpsert",
    "skipUpsertView",
    "upsertViewFreshnessMs",
    "skipUpsertDelete",
    "useStarTree",
    "useIndexBasedDistinctOperator",
    "invertedIndexDistinctCostRatio",
    "jsonIndexDistinctSkipMissingPath",
    "scanStarTreeNodes",
    "routingOptions",
    "sampler",
    "useScanReorderOpt",
    "maxExecutionThreads",
    "collectGCStats",
    "queryHash",
    "minSegmentGroupTrimSize",
    "minServerGroupTrimSize",
    "minBrokerGroupTrimSize",
    "mseMinGroupTrimSize",
    "sortAggregateLimitThreshold",
    "sortAggregateSingleThreadedNumSegmentsThreshold",
    "accurateGroupByWithoutOrderBy",
    "numThreadsExtractFinalResult",
    "chunkSizeExtractFinalResult",
    "streamingGroupByFlushThreshold",
    "numReplicaGroupsToQuery",
    "orderedPreferredPools",
    "useFixedReplica",
    "explainPlanVerbose",
    "useMultistageEngine",
    "inferPartitionHint",
    "enableNullHandling",
    "applicationName",
    "useSpools",
    "usePhysicalOptimizer",
    "unnestColumnPruning",
    "streamStats",
    "explainAskingServers",
    "serverReturnFinalResult",
    "serverReturnFinalResultKeyUnpartitioned",
    "AndScanReordering",
    "skipIndexes",
    "traceRuleProductions",
    "skipPlannerRules",
    "usePlannerRules",
    "allowReverseOrder",
    "multiStageLeafLimit",
    "errorOnNumGroupsLimit",
    "numGroupsLimit",
    "numGroupsWarningLimit",
    "maxInitialResultHolderCapacity",
    "minInitialIndexedTableCapacity",
    "mseMaxInitialResultHolderCapacity",
    "groupTrimThreshold",
    "stageParallelism",
    "inPredicatePreSorted",
    "inPredicateLookupAlgorithm",
    "inPredicatePruningThreshold",
    "regexDictSizeThreshold",
    "dropResults",
    "excludeVirtualColumns",
    "maxStreamingPendingBlocks",
    "maxRowsInJoin",
    "joinOverflowMode",
    "maxExecutionTimeMsInDistinct",
    "maxRowsInDistinct",
    "maxRowsWithoutChangeInDistinct",
    "maxRowsInWindow",
    "windowOverflowMode",
    "maxServerResponseSizeBytes",
    "maxQueryResponseSizeBytes",
    "skipUnavailableServers",
    "ignoreMissingSegments",
    "isSecondaryWorkload",
    "filteredAggregationsSkipEmptyGroups",
    "optimizeMaxInitialResultHolderCapacity",
    "getCursor",
    "cursorNumRows",
    "clientQueryId",
    "useMSEToFillEmptyResponseSchema",
    "inferInvalidSegmentPartition",
    "inferRealtimeSegmentPartition",
    "useLiteMode",
    "liteModeLeafStageLimit",
    "liteModeLeafStageFanOutAdjustedLimit",
    "liteModeImplicitLeafStageLimit",
    "useBrokerPruning",
    "runInBroker",
    "useLeafServerForIntermediateStage",
    "workloadName",
    "autoRewriteAggregationType",
    "enableMultiClusterRouting",
    "sortExchangeCopyThreshold",
    "vectorNprobe",
    "vectorExactRerank",
    "vectorMaxCandidates",
    "vectorDistanceThreshold",
    "vectorEfSearch",
    "vectorUseRelativeDistance",
    "vectorUseBoundedQueue",
    "trace",
    "database",
    // Not a key of today's Pinot but of its PQL days; the `pinotdb` client's
    // `preserve_types=True` still appends `OPTION(preserveType='true')` to every query.
    "preserveType",
];

/// Lowercase key → canonical key.
static CANONICAL_KEYS: LazyLock<BTreeMap<String, &'static str>> =
    LazyLock::new(|| PINOT_OPTION_KEYS.iter().map(|k| (k.to_lowercase(), *k)).collect());

/// Unknown keys already logged: each is logged once, and at most this many are remembered
/// (pinot-common `QueryOptionsUtils.java`, `MAX_WARNED_SQL_OPTION_KEYS`).
const MAX_WARNED_KEYS: usize = 1000;
static WARNED_KEYS: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

fn canonical_key(key: &str) -> (String, bool) {
    match CANONICAL_KEYS.get(&key.to_lowercase()) {
        Some(k) => ((*k).to_string(), true),
        None => (key.to_string(), false),
    }
}

/// Java's `Boolean.parseBoolean`: true only for `true`, in any case.
fn java_bool(value: &str) -> bool {
    value.eq_ignore_ascii_case("true")
}

/// A query's SQL once its options are taken out: the one statement to run and the options.
#[derive(Debug)]
pub(crate) struct ParsedQuery {
    pub statement: DfStatement,
    pub options: PinotOptions,
}

/// Parses `sql` as Pinot does: a trailing `OPTION(...)` clause is cut off first, then the
/// statements are parsed, `SET key = value` ones become options and exactly one other
/// statement must remain (pinot-common `CalciteSqlParser.compileToSqlNodeAndOptions`).
pub(crate) fn parse(sql: &str, request: &RequestOptions) -> Result<ParsedQuery, QueryError> {
    let (sql, clause) = split_option_clause(sql)?;
    let statements =
        DFParser::parse_sql(sql).map_err(|e| QueryError::validation(format!("SQL parse error: {e}")))?;
    let mut set = Vec::new();
    let mut queries = Vec::new();
    for statement in statements {
        match statement {
            DfStatement::Statement(s) => match *s {
                Statement::Set(Set::SingleAssignment { variable, values, .. }) => {
                    let key = variable.0.last().map(|p| p.to_string()).unwrap_or_default();
                    let key = key.trim_matches(|c| c == '"' || c == '`').to_string();
                    let [value] = values.as_slice() else {
                        return Err(QueryError::validation(format!(
                            "SET {key} takes one value, as in SET {key} = 5000"
                        )));
                    };
                    set.push((key, literal_text(value)));
                }
                Statement::Set(other) => {
                    return Err(QueryError::validation(format!(
                        "`{other}` is not a query option: set one as SET key = value;"
                    )));
                }
                s => queries.push(DfStatement::Statement(Box::new(s))),
            },
            other => queries.push(other),
        }
    }
    if queries.len() != 1 {
        return Err(QueryError::validation(match queries.len() {
            0 => "no query to run: the SQL holds only SET statements".to_string(),
            n => format!("expected one SQL statement, found {n}"),
        }));
    }
    let body = match &request.query_options {
        Some(text) => request_options(text)?,
        None => Vec::new(),
    };
    let trace = request.trace.then(|| ("trace".to_string(), "true".to_string()));
    let options = merge(set, clause, body, trace)?;
    let statement = queries.pop().expect("one statement, counted above");
    Ok(ParsedQuery { statement, options })
}

/// A SET value as Calcite's `SqlLiteral.toValue` gives it: a string without its quotes, a
/// number or a boolean as written.
fn literal_text(expr: &Expr) -> String {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// Merges the options of each source; a key keeps the first value it gets, in the order SET,
/// OPTION(...), the request's `queryOptions`, its `trace`. Within SET and within OPTION(...) a
/// later value replaces an earlier one (Java's `HashMap.put`).
fn merge(
    set: Vec<(String, String)>,
    clause: Vec<(String, String)>,
    body: Vec<(String, String)>,
    trace: Option<(String, String)>,
) -> Result<PinotOptions, QueryError> {
    let mut options = PinotOptions::default();
    let mut ignored = Vec::new();
    for (source, overwrite) in
        [(set, true), (clause, true), (body, false), (trace.into_iter().collect(), false)]
    {
        let mut this: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in source {
            let (key, known) = canonical_key(&key);
            if !known && !ignored.contains(&key) {
                ignored.push(key.clone());
            }
            if overwrite || !this.contains_key(&key) {
                this.insert(key, value);
            }
        }
        for (key, value) in this {
            options.values.entry(key).or_insert(value);
        }
    }
    if let Some(ms) = options.values.get("timeoutMs") {
        // pinot-common QueryOptionsUtils.getTimeoutMs: a long of at least 1.
        match ms.parse::<u64>() {
            Ok(ms) if ms >= 1 => options.timeout = Some(Duration::from_millis(ms)),
            _ => {
                return Err(QueryError::validation(format!(
                    "timeoutMs must be a number between 1 and 2^63-1, got: {ms}"
                )));
            }
        }
    }
    options.trace = options.values.get("trace").is_some_and(|v| java_bool(v));
    for key in &ignored {
        warn_once(key);
    }
    options.ignored = ignored;
    Ok(options)
}

fn warn_once(key: &str) {
    let mut warned = WARNED_KEYS.lock().unwrap_or_else(|p| p.into_inner());
    if warned.len() < MAX_WARNED_KEYS && warned.insert(key.to_lowercase()) {
        tracing::warn!(option = key, "Unsupported query option '{key}': ignored (logged once per key)");
    }
}

/// The request body's `queryOptions`: `k1=v1;k2=v2`, empty entries skipped, each entry exactly
/// one `=`, no key twice (pinot-common `RequestUtils.getOptionsFromString`, Guava's
/// `Splitter.on(';').omitEmptyStrings().trimResults().withKeyValueSeparator('=')`).
fn request_options(text: &str) -> Result<Vec<(String, String)>, QueryError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let mut parts = entry.split('=');
        let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(QueryError::validation(format!(
                "queryOptions: '{entry}' is not a valid entry: write key=value, entries separated by ';'"
            )));
        };
        let key = key.trim().to_string();
        if out.iter().any(|(k, _)| *k == key) {
            return Err(QueryError::validation(format!("queryOptions: duplicate key '{key}'")));
        }
        out.push((key, value.trim().to_string()));
    }
    Ok(out)
}

/// One `key=value` of a query option, as written.
type OptionPair = (String, String);

/// Cuts a trailing `OPTION(k1=v1, k2=v2)` off `sql` (a `;` and blanks may follow it) and
/// returns the SQL before it and the pairs, as pinot-common `CalciteSqlParser.java` does with
/// `\s*option\s*\(([^)]+)\)\s*;?\s*\Z` (case-insensitive) and `extractOptionsMap`: each pair
/// must have exactly one `=`. Unlike that pattern, OPTION must be a word of its own (`xoption(1)`
/// at the end of a query is a function call), and quotes around a value are dropped
/// (`preserveType='true'` is `true`; Pinot would keep the quotes).
pub(crate) fn split_option_clause(sql: &str) -> Result<(&str, Vec<OptionPair>), QueryError> {
    let trimmed = sql.trim_end();
    let trimmed = trimmed.strip_suffix(';').unwrap_or(trimmed).trim_end();
    let Some(before_close) = trimmed.strip_suffix(')') else { return Ok((sql, Vec::new())) };
    // The content may not hold `)`: the clause's `(` is the nearest one before the end that
    // follows the word OPTION.
    let bytes = before_close.as_bytes();
    let mut i = bytes.len();
    let open = loop {
        if i == 0 {
            return Ok((sql, Vec::new()));
        }
        i -= 1;
        match bytes[i] {
            b')' => return Ok((sql, Vec::new())),
            b'(' => {
                let head = before_close[..i].trim_end();
                let is_option = head.len() >= 6
                    && head.is_char_boundary(head.len() - 6)
                    && head[head.len() - 6..].eq_ignore_ascii_case("option")
                    && !head[..head.len() - 6]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '"' || c == '.');
                if is_option {
                    break i;
                }
            }
            _ => {}
        }
    };
    let content = &before_close[open + 1..];
    if content.trim().is_empty() {
        return Ok((sql, Vec::new()));
    }
    let head = before_close[..open].trim_end();
    let rest = &head[..head.len() - 6];
    let mut pairs = Vec::new();
    for option in content.split(',') {
        let parts: Vec<&str> = option.split('=').collect();
        // Java's String.split drops trailing empty strings: `a=` has one part.
        let parts: Vec<&str> = match parts.iter().rposition(|p| !p.is_empty()) {
            Some(last) => parts[..=last].to_vec(),
            None => Vec::new(),
        };
        let [key, value] = parts.as_slice() else {
            return Err(QueryError::validation(format!(
                "OPTION statement requires two parts separated by '=': got '{}'",
                option.trim()
            )));
        };
        pairs.push((key.trim().to_string(), unquote(value.trim()).to_string()));
    }
    Ok((rest, pairs))
}

fn unquote(value: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner;
        }
    }
    value
}

/// The broker's default LIMIT: a query without LIMIT (selection, DISTINCT or GROUP BY) returns
/// at most `limit` rows (pinot-broker `BaseSingleStageBrokerRequestHandler.java` sets
/// `pinot.broker.default.query.limit`, 10, on a query whose `PinotQuery` has no limit).
pub(crate) fn apply_default_limit(query: &mut Query, limit: usize) {
    if query.fetch.is_some() {
        return;
    }
    let value = Expr::Value(Value::Number(limit.to_string(), false).into());
    match &mut query.limit_clause {
        None => {
            query.limit_clause =
                Some(LimitClause::LimitOffset { limit: Some(value), offset: None, limit_by: Vec::new() })
        }
        Some(LimitClause::LimitOffset { limit: l @ None, .. }) => *l = Some(value),
        Some(_) => {}
    }
}

/// How Pinot names and types one result column, where that differs from DataFusion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ColumnShape {
    /// Pinot's name for an expression without an alias.
    pub name: Option<String>,
    /// The type of an aggregation's result.
    pub kind: Option<ResultKind>,
}

/// An aggregation's result type in Pinot's single-stage engine (pinot-core
/// `*AggregationFunction.getFinalResultColumnType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultKind {
    /// DOUBLE: SUM, AVG, MIN, MAX, DISTINCTSUM, DISTINCTAVG, PERCENTILE, PERCENTILETDIGEST.
    Double,
    /// LONG: COUNT, DISTINCTCOUNTHLL, PERCENTILEEST.
    Long,
    /// INT: DISTINCTCOUNT.
    Int,
}

/// The shapes of a query's result columns, one per SELECT item; empty when the columns cannot
/// be matched to items (a `*`, a UNION).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ResultShape {
    columns: Vec<ColumnShape>,
}

/// The values' type of a dictionary type.
fn dictionary_values(t: &DataType) -> Option<&DataType> {
    match t {
        DataType::Dictionary(_, values) => Some(values),
        _ => None,
    }
}

impl ResultShape {
    /// The shape of `query`'s result, read from its SELECT list. Table and column names must
    /// already have their schema spelling (Pinot names columns after it), and Pinot's function
    /// spellings must not yet be rewritten into DataFusion's.
    pub(crate) fn of(query: &Query) -> ResultShape {
        let SetExpr::Select(select) = query.body.as_ref() else { return ResultShape::default() };
        let mut columns = Vec::new();
        for item in &select.projection {
            columns.push(match item {
                SelectItem::UnnamedExpr(expr) => ColumnShape {
                    name: match expr {
                        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => None,
                        e => pinot_name(e),
                    },
                    kind: result_kind(expr),
                },
                SelectItem::ExprWithAlias { expr, .. } => ColumnShape { name: None, kind: result_kind(expr) },
                _ => return ResultShape::default(),
            });
        }
        ResultShape { columns }
    }

    fn is_identity(&self) -> bool {
        self.columns.iter().all(|c| *c == ColumnShape::default())
    }

    fn target(&self, index: usize, field: &Field) -> Option<DataType> {
        let kind = self.columns.get(index)?.kind?;
        let t = field.data_type();
        let numeric = t.is_numeric();
        match kind {
            ResultKind::Double if numeric && *t != DataType::Float64 => Some(DataType::Float64),
            ResultKind::Long if numeric && *t != DataType::Int64 => Some(DataType::Int64),
            ResultKind::Int if numeric && *t != DataType::Int32 => Some(DataType::Int32),
            _ => None,
        }
    }

    /// True when the shape renames or converts the columns of a result of `columns` columns.
    fn shapes(&self, columns: usize) -> bool {
        !self.is_identity() && self.columns.len() == columns
    }

    /// The result schema with Pinot's names and types. A dictionary-encoded column of the table
    /// comes out as its values' type: a result holds values, and its size is its own rows'
    /// rather than the dictionary of the segment they came from.
    pub(crate) fn schema(&self, schema: &SchemaRef) -> SchemaRef {
        let shapes = self.shapes(schema.fields().len());
        if !shapes && !schema.fields().iter().any(|f| dictionary_values(f.data_type()).is_some()) {
            return Arc::clone(schema);
        }
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let name = match shapes {
                    true => self.columns[i].name.clone().unwrap_or_else(|| f.name().clone()),
                    false => f.name().clone(),
                };
                match shapes.then(|| self.target(i, f)).flatten() {
                    // A converted column is no longer the table's: its Pinot type is its own.
                    Some(t) => Field::new(name, t, true),
                    None => {
                        let field = f.as_ref().clone().with_name(name);
                        match dictionary_values(f.data_type()) {
                            Some(values) => field.with_data_type(values.clone()),
                            None => field,
                        }
                    }
                }
            })
            .collect();
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
    }

    /// `batch` with Pinot's names and types, and dictionaries decoded (see
    /// [`ResultShape::schema`]).
    pub(crate) fn apply(&self, batch: RecordBatch, shaped: &SchemaRef) -> arrow::error::Result<RecordBatch> {
        let shapes = self.shapes(batch.num_columns());
        if !shapes && !batch.columns().iter().any(|c| dictionary_values(c.data_type()).is_some()) {
            return Ok(batch);
        }
        let schema = batch.schema();
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| match shapes.then(|| self.target(i, schema.field(i))).flatten() {
                Some(t) => arrow::compute::cast(c, &t),
                None => match dictionary_values(c.data_type()) {
                    Some(values) => arrow::compute::cast(c, values),
                    None => Ok(Arc::clone(c)),
                },
            })
            .collect::<arrow::error::Result<_>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(Arc::clone(shaped), columns, &options)
    }
}

/// A function name as Pinot canonicalizes it: lowercase, without underscores (pinot-common
/// `RequestUtils.canonicalizeFunctionNamePreservingSpecialKey`).
fn canonical_function(f: &Function) -> String {
    let name = f.name.0.last().map(|p| p.to_string()).unwrap_or_default();
    name.trim_matches('"').to_lowercase().replace('_', "")
}

fn is_distinct(f: &Function) -> bool {
    matches!(&f.args, FunctionArguments::List(l) if l.duplicate_treatment == Some(DuplicateTreatment::Distinct))
}

fn function_args(f: &Function) -> Vec<Option<&Expr>> {
    match &f.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                | FunctionArg::Named { arg: FunctionArgExpr::Expr(e), .. } => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The aggregation a function call is, by Pinot's name for it: COUNT(DISTINCT x) is
/// DISTINCTCOUNT, SUM(DISTINCT x) DISTINCTSUM, AVG(DISTINCT x) DISTINCTAVG (pinot-common
/// `CalciteSqlParser.compileFunctionExpression`).
fn aggregation(f: &Function) -> Option<String> {
    if f.over.is_some() || f.filter.is_some() {
        return None;
    }
    let name = canonical_function(f);
    let name = match (name.as_str(), is_distinct(f)) {
        ("count", true) => "distinctcount".to_string(),
        ("sum", true) => "distinctsum".to_string(),
        ("avg", true) => "distinctavg".to_string(),
        _ => name,
    };
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let known = matches!(
        base,
        "count"
            | "sum"
            | "avg"
            | "min"
            | "max"
            | "distinctcount"
            | "distinctsum"
            | "distinctavg"
            | "distinctcounthll"
            | "distinctcounthllplus"
            | "distinctcountsmarthll"
            | "lastwithtime"
            | "firstwithtime"
            | "minmaxrange"
            | "percentile"
            | "percentileest"
            | "percentiletdigest"
            | "mode"
            | "sumprecision"
            | "countmv"
            | "summv"
            | "minmv"
            | "maxmv"
            | "avgmv"
            | "distinctcountmv"
    );
    // Digits belong in the name of the percentiles only (PERCENTILE95).
    let digits_ok = base == name || base.starts_with("percentile");
    (known && digits_ok).then_some(name)
}

/// Pinot's type for an aggregation's result (pinot-core `SumAggregationFunction.java`,
/// `AvgAggregationFunction.java`, `MinAggregationFunction.java`, `MaxAggregationFunction.java`,
/// `DistinctSumAggregationFunction.java`, `DistinctAvgAggregationFunction.java`,
/// `PercentileAggregationFunction.java`, `PercentileTDigestAggregationFunction.java`,
/// `MinMaxRangeAggregationFunction.java`: DOUBLE; `CountAggregationFunction.java`,
/// `DistinctCountHLLAggregationFunction.java`, `PercentileEstAggregationFunction.java`: LONG;
/// `DistinctCountAggregationFunction.java`: INT; `ModeAggregationFunction.java`, the
/// `Sum/Min/Max/AvgMVAggregationFunction.java`: DOUBLE; `CountMVAggregationFunction.java`:
/// LONG; `DistinctCountMVAggregationFunction.java`: INT). LASTWITHTIME's type is its third
/// argument's.
fn result_kind(expr: &Expr) -> Option<ResultKind> {
    let expr = unnest(expr);
    let Expr::Function(f) = expr else { return None };
    let name = aggregation(f)?;
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    Some(match base {
        "count"
        | "distinctcounthll"
        | "distinctcounthllplus"
        | "distinctcountsmarthll"
        | "percentileest"
        | "countmv" => ResultKind::Long,
        "distinctcount" | "distinctcountmv" => ResultKind::Int,
        // SUMPRECISION is STRING (`SumPrecisionAggregationFunction.getFinalResultColumnType`).
        "lastwithtime" | "firstwithtime" | "sumprecision" => return None,
        _ => ResultKind::Double,
    })
}

fn unnest(expr: &Expr) -> &Expr {
    match expr {
        Expr::Nested(e) => unnest(e),
        e => e,
    }
}

/// Java's `Double.toString` of a percentile as written in SQL (`90` → `90.0`).
fn java_double(text: &str) -> Option<String> {
    let v: f64 = text.parse().ok()?;
    if !v.is_finite() {
        return None;
    }
    Some(if v.fract() == 0.0 && v.abs() < 1e7 { format!("{v:.1}") } else { format!("{v}") })
}

/// The name Pinot gives an expression's result column: an identifier is itself, a literal is
/// quoted (`'5'`), a function is `name(arg1,arg2)` with its canonical name, an operator is the
/// function Pinot compiles it to (`a + b` is `plus(a,b)`; pinot-common
/// `CalciteSqlParser.compileFunctionExpression`, `FunctionContext.toString`,
/// `LiteralContext.toString`). An aggregation is `name(arg)` of its first argument
/// (pinot-core `BaseSingleInputAggregationFunction.getResultColumnName`), COUNT is `count(*)`
/// whatever it counts (`CountAggregationFunction.java`, null handling off), a percentile with
/// its percentile as an argument is `percentile(x, 90.0)` and with it in its name
/// `percentile90(x)` (`PercentileAggregationFunction.java`, `PercentileEstAggregationFunction.java`).
/// None where Shoal does not know Pinot's name: DataFusion's stays.
pub(crate) fn pinot_name(expr: &Expr) -> Option<String> {
    Some(match expr {
        Expr::Identifier(i) => i.value.clone(),
        Expr::CompoundIdentifier(parts) => parts.last()?.value.clone(),
        Expr::Nested(e) => pinot_name(e)?,
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => format!("'{n}'"),
            Value::SingleQuotedString(s) => format!("'{s}'"),
            Value::Boolean(b) => format!("'{b}'"),
            Value::Null => "'null'".to_string(),
            _ => return None,
        },
        Expr::BinaryOp { left, op, right } => {
            let name = match op {
                BinaryOperator::Plus => "plus",
                BinaryOperator::Minus => "minus",
                BinaryOperator::Multiply => "times",
                BinaryOperator::Divide => "divide",
                BinaryOperator::Modulo => "mod",
                BinaryOperator::Eq => "equals",
                BinaryOperator::NotEq => "notequals",
                BinaryOperator::Gt => "greaterthan",
                BinaryOperator::GtEq => "greaterthanorequal",
                BinaryOperator::Lt => "lessthan",
                BinaryOperator::LtEq => "lessthanorequal",
                BinaryOperator::And => "and",
                BinaryOperator::Or => "or",
                _ => return None,
            };
            format!("{name}({},{})", pinot_name(left)?, pinot_name(right)?)
        }
        // A negative number is one literal in Pinot (CalciteSqlParser folds the minus into it).
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => format!("'-{n}'"),
                _ => return None,
            },
            _ => return None,
        },
        Expr::Cast { expr, data_type, .. } => {
            format!("cast({},'{}')", pinot_name(expr)?, data_type.to_string().to_uppercase())
        }
        // SUBSTR(s, a, b) and SUBSTRING(s, a, n), which the SQL parser reads as its own syntax:
        // named as the functions they are in Pinot.
        Expr::Substring { expr, substring_from, substring_for, shorthand, .. } => {
            let mut args = vec![pinot_name(expr)?];
            for arg in [substring_from, substring_for].into_iter().flatten() {
                args.push(pinot_name(arg)?);
            }
            format!("{}({})", if *shorthand { "substr" } else { "substring" }, args.join(","))
        }
        Expr::Function(f) => {
            let args = function_args(f);
            match aggregation(f) {
                Some(name) if name == "count" => "count(*)".to_string(),
                Some(name) => {
                    let first = match args.first() {
                        Some(Some(e)) => pinot_name(e)?,
                        _ => return None,
                    };
                    let percentile =
                        name.starts_with("percentile") && name.ends_with(|c: char| c.is_alphabetic());
                    match (percentile, args.get(1)) {
                        (true, Some(Some(Expr::Value(v)))) => match &v.value {
                            Value::Number(p, _) => format!("{name}({first}, {})", java_double(p)?),
                            _ => return None,
                        },
                        (true, Some(_)) => return None,
                        _ => format!("{name}({first})"),
                    }
                }
                None => {
                    if f.over.is_some() || f.filter.is_some() || is_distinct(f) {
                        return None;
                    }
                    let args: Vec<String> =
                        args.into_iter().map(|a| a.and_then(pinot_name)).collect::<Option<_>>()?;
                    format!("{}({})", canonical_function(f), args.join(","))
                }
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(sql: &str, request: &RequestOptions) -> PinotOptions {
        parse(sql, request).unwrap_or_else(|e| panic!("{sql}: {e}")).options
    }

    #[test]
    fn set_statements_option_clauses_and_the_request_give_options_in_pinots_order() {
        let none = RequestOptions::default();
        let o = options("SET timeoutMs = 5000; SET useMultistageEngine = true; SELECT 1", &none);
        assert_eq!(o.timeout, Some(Duration::from_millis(5000)));
        assert_eq!(o.values["useMultistageEngine"], "true");
        let o = options("SELECT 1 OPTION(timeoutMs=7000, preserveType='true')", &none);
        assert_eq!(o.timeout, Some(Duration::from_millis(7000)));
        assert_eq!(o.values["preserveType"], "true");
        assert!(o.ignored.is_empty());
        // A key matches without regard to case; SET wins over OPTION, OPTION over the request.
        let request = RequestOptions { query_options: Some("timeoutms=1;trace=true".into()), trace: false };
        let o = options("SET TIMEOUTMS = 3; SELECT 1 option ( timeoutMs = 2 ) ;", &request);
        assert_eq!(o.values["timeoutMs"], "3");
        assert!(o.trace);
        let o = options("SELECT 1 OPTION(timeoutMs=2)", &request);
        assert_eq!(o.values["timeoutMs"], "2");
        let o = options("SELECT 1", &RequestOptions { query_options: None, trace: true });
        assert!(o.trace);
        // Unknown keys are kept aside and ignored.
        let o = options("SET fooBar = 1; SELECT 1", &none);
        assert_eq!(o.ignored, ["fooBar"]);
    }

    #[test]
    fn malformed_options_are_refused() {
        let none = RequestOptions::default();
        for sql in [
            "SELECT 1 OPTION(timeoutMs)",
            "SELECT 1 OPTION(a=b=c)",
            "SET timeoutMs = 0; SELECT 1",
            "SET timeoutMs = 'soon'; SELECT 1",
            "SET timeoutMs = 5",
        ] {
            assert!(parse(sql, &none).is_err(), "{sql}");
        }
        for body in ["timeoutMs", "a=1;a=2", "a=b=c"] {
            let request = RequestOptions { query_options: Some(body.into()), trace: false };
            assert!(parse("SELECT 1", &request).is_err(), "{body}");
        }
    }

    #[test]
    fn only_a_trailing_option_word_is_a_clause() {
        assert_eq!(split_option_clause("SELECT f(1)").unwrap().1, []);
        assert_eq!(split_option_clause("SELECT xoption(a=1)").unwrap().1, []);
        let (rest, pairs) = split_option_clause("SELECT 1 OPTION(a=1,b = 2);").unwrap();
        assert_eq!(rest, "SELECT 1 ");
        assert_eq!(pairs, [("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())]);
    }

    fn names(sql: &str) -> Vec<Option<String>> {
        let parsed = parse(sql, &RequestOptions::default()).unwrap();
        let DfStatement::Statement(s) = parsed.statement else { panic!() };
        let Statement::Query(q) = *s else { panic!() };
        ResultShape::of(&q).columns.into_iter().map(|c| c.name).collect()
    }

    #[test]
    fn columns_are_named_as_pinot_names_them() {
        assert_eq!(
            names(
                "SELECT sum(v), COUNT(*), count(v), DISTINCTCOUNT(k), count(DISTINCT k), MAX(a + b) FROM t"
            ),
            [
                Some("sum(v)".into()),
                Some("count(*)".into()),
                Some("count(*)".into()),
                Some("distinctcount(k)".into()),
                Some("distinctcount(k)".into()),
                Some("max(plus(a,b))".into()),
            ]
        );
        assert_eq!(
            names("SELECT PERCENTILEEST(v, 90), percentile95(v), k, upper(k), v * 2, avg(v) AS a FROM t"),
            [
                Some("percentileest(v, 90.0)".into()),
                Some("percentile95(v)".into()),
                None,
                Some("upper(k)".into()),
                Some("times(v,'2')".into()),
                None,
            ]
        );
        // SUBSTR/SUBSTRING, which the parser reads as syntax, and negative literals; an
        // aggregation is named after its first argument only (DISTINCTCOUNTHLL's log2m,
        // MODE's reducer: BaseSingleInputAggregationFunction.getResultColumnName).
        assert_eq!(
            names(
                "SELECT SUBSTR(k, 1, 4), SUBSTRING(k, 2), jsonPathLong(d, '$.n', -1), DISTINCTCOUNTHLL(k, 8), MODE(v, 'MAX') FROM t"
            ),
            [
                Some("substr(k,'1','4')".into()),
                Some("substring(k,'2')".into()),
                Some("jsonpathlong(d,'$.n','-1')".into()),
                Some("distinctcounthll(k)".into()),
                Some("mode(v)".into()),
            ]
        );
    }
}
