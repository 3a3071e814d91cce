//! Pinot's `LOOKUP` through SQL: a fact table (`games`) joined to dimension tables. Every
//! expected value is worked out by hand from the rows below.

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use shoal_query::{DimensionTable, ErrorKind, QueryEngine};
use std::sync::Arc;

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

/// dimTeams, keyed by teamID (INT). Team 2 comes twice: the later row ("New York Mets",
/// founded 1962) wins. Defaults: Pinot's for INT, STRING, LONG, STRING, DOUBLE.
fn teams(rows: &[(i32, &str, i64, &str)]) -> DimensionTable {
    let b = batch(vec![
        ("teamID", Arc::new(Int32Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>()))),
        ("teamName", Arc::new(StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>()))),
        ("founded", Arc::new(Int64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>()))),
        ("league", Arc::new(StringArray::from(rows.iter().map(|r| r.3).collect::<Vec<_>>()))),
        ("rating", Arc::new(Float64Array::from(vec![1.5; rows.len()]))),
    ]);
    let defaults = vec![
        ScalarValue::Int32(Some(i32::MIN)),
        ScalarValue::from("null"),
        ScalarValue::Int64(Some(i64::MIN)),
        ScalarValue::from("null"),
        ScalarValue::Float64(Some(f64::NEG_INFINITY)),
    ];
    DimensionTable::new("dimTeams", vec![b], vec!["teamID".into()], defaults).unwrap()
}

fn standard_teams() -> DimensionTable {
    teams(&[
        (1, "Cubs", 1876, "NL"),
        (2, "Mets", 1962, "NL"),
        (3, "Sox", 1901, "AL"),
        (2, "New York Mets", 1962, "NL"),
    ])
}

/// dimSeasons, keyed by (league STRING, year INT), given in two batches.
fn seasons() -> DimensionTable {
    let part = |leagues: Vec<&str>, years: Vec<i32>, champions: Vec<&str>| {
        batch(vec![
            ("league", Arc::new(StringArray::from(leagues))),
            ("year", Arc::new(Int32Array::from(years))),
            ("champion", Arc::new(StringArray::from(champions))),
        ])
    };
    let batches = vec![
        part(vec!["AL", "NL"], vec![2020, 2020], vec!["Rays", "Dodgers"]),
        part(vec!["AL", "NL"], vec![2021, 2021], vec!["Astros", "Braves"]),
    ];
    let defaults =
        vec![ScalarValue::from("null"), ScalarValue::Int32(Some(i32::MIN)), ScalarValue::from("null")];
    DimensionTable::new("dimSeasons", batches, vec!["league".into(), "year".into()], defaults).unwrap()
}

/// games: five rows; team 9 is in no dimension row, game 4 has no team, (NL, 2019) and
/// (XX, 2020) are no season.
///
/// | id | team | teamBig | teamText | league | year |
/// |----|------|---------|----------|--------|------|
/// | 1  | 1    | 1       | '1'      | AL     | 2020 |
/// | 2  | 2    | 2       | '2'      | NL     | 2020 |
/// | 3  | 9    | 9       | '9'      | AL     | 2021 |
/// | 4  | NULL | NULL    | NULL     | NL     | 2019 |
/// | 5  | 3    | 3       | '3'      | XX     | 2020 |
fn engine() -> QueryEngine {
    let games = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5]))),
        ("team", Arc::new(Int32Array::from(vec![Some(1), Some(2), Some(9), None, Some(3)]))),
        ("teamBig", Arc::new(Int64Array::from(vec![Some(1), Some(2), Some(9), None, Some(3)]))),
        ("teamText", Arc::new(StringArray::from(vec![Some("1"), Some("2"), Some("9"), None, Some("3")]))),
        ("league", Arc::new(StringArray::from(vec!["AL", "NL", "AL", "NL", "XX"]))),
        ("year", Arc::new(Int32Array::from(vec![2020, 2020, 2021, 2019, 2020]))),
    ]);
    let engine = QueryEngine::default();
    let games = MemTable::try_new(games.schema(), vec![vec![games]]).unwrap();
    engine.register_external("games", Arc::new(games)).unwrap();
    engine.register_dimension("dimTeams", Arc::new(standard_teams())).unwrap();
    engine.register_dimension("dimSeasons", Arc::new(seasons())).unwrap();
    engine
}

/// The result's rows, each value as text.
async fn rows(engine: &QueryEngine, sql: &str) -> Vec<Vec<String>> {
    let result = engine.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in &result.batches {
        let formatters: Vec<_> =
            b.columns().iter().map(|c| ArrayFormatter::try_new(c, &options).unwrap()).collect();
        for r in 0..b.num_rows() {
            out.push(formatters.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    out
}

/// The single column of the result.
async fn column(engine: &QueryEngine, sql: &str) -> Vec<String> {
    rows(engine, sql).await.into_iter().map(|mut r| r.remove(0)).collect()
}

async fn error(engine: &QueryEngine, sql: &str) -> (ErrorKind, String) {
    match engine.execute(sql).await {
        Ok(r) => panic!("{sql}: answered {:?}", r.batches),
        Err(e) => (e.kind, e.message),
    }
}

#[tokio::test]
async fn int_key_hits_and_misses() {
    let e = engine();
    // 1 → Cubs, 2 → the later row, 9 → no row, NULL → no lookup, 3 → Sox.
    let names =
        column(&e, "SELECT LOOKUP('dimTeams', 'teamName', 'teamID', team) FROM games ORDER BY id").await;
    assert_eq!(names, ["Cubs", "New York Mets", "null", "null", "Sox"]);
    // A LONG column's default is Long.MIN_VALUE.
    let founded =
        column(&e, "SELECT LOOKUP('dimTeams', 'founded', 'teamID', team) FROM games ORDER BY id").await;
    let min = i64::MIN.to_string();
    assert_eq!(founded, ["1876", "1962", &min, &min, "1901"]);
    // An INT column's is Integer.MIN_VALUE.
    let ids = column(&e, "SELECT LOOKUP('dimTeams', 'teamID', 'teamID', team) FROM games ORDER BY id").await;
    assert_eq!(ids, ["1", "2", "-2147483648", "-2147483648", "3"]);
    let ratings =
        column(&e, "SELECT LOOKUP('dimTeams', 'rating', 'teamID', team) FROM games ORDER BY id").await;
    assert_eq!(ratings, ["1.5", "1.5", "-inf", "-inf", "1.5"]);
}

#[tokio::test]
async fn the_result_has_the_columns_type() {
    let e = engine();
    let sql = "SELECT LOOKUP('dimTeams', 'teamID', 'teamID', team) AS i, LOOKUP('dimTeams', 'founded', 'teamID', team) AS f, \
               LOOKUP('dimTeams', 'teamName', 'teamID', team) AS n FROM games";
    let r = e.execute(sql).await.unwrap();
    let types: Vec<String> = r.schema.fields().iter().map(|f| f.data_type().to_string()).collect();
    assert_eq!(types, ["Int32", "Int64", "Utf8"]);
}

#[tokio::test]
async fn join_values_are_cast_to_the_key_type() {
    let e = engine();
    let want = ["Cubs", "New York Mets", "null", "null", "Sox"];
    // BIGINT fact values against the INT key.
    let sql = "SELECT LOOKUP('dimTeams', 'teamName', 'teamID', teamBig) FROM games ORDER BY id";
    assert_eq!(column(&e, sql).await, want);
    // Text fact values against the INT key, as Pinot reads them as INT.
    let sql = "SELECT LOOKUP('dimTeams', 'teamName', 'teamID', teamText) FROM games ORDER BY id";
    assert_eq!(column(&e, sql).await, want);
    // An expression: team + 1 is 2, 3, 10, NULL, 4.
    let sql = "SELECT LOOKUP('dimTeams', 'teamName', 'teamID', team + 1) FROM games ORDER BY id";
    assert_eq!(column(&e, sql).await, ["New York Mets", "Sox", "null", "null", "null"]);
    // Text that is no INT fails the query.
    let (kind, message) =
        error(&e, "SELECT LOOKUP('dimTeams', 'teamName', 'teamID', league) FROM games").await;
    assert_eq!(kind, ErrorKind::Execution, "{message}");
    assert!(message.contains("cannot be converted to Int32"), "{message}");
}

#[tokio::test]
async fn composite_key() {
    let e = engine();
    // (AL, 2020) Rays, (NL, 2020) Dodgers, (AL, 2021) Astros, (NL, 2019) none, (XX, 2020) none.
    let sql =
        "SELECT LOOKUP('dimSeasons', 'champion', 'league', league, 'year', year) FROM games ORDER BY id";
    assert_eq!(column(&e, sql).await, ["Rays", "Dodgers", "Astros", "null", "null"]);
    // The year as text and as BIGINT is cast to INT; a literal league works beside a column.
    let sql = "SELECT LOOKUP('dimSeasons', 'champion', 'league', 'NL', 'year', CAST(year AS VARCHAR)) \
               FROM games ORDER BY id";
    assert_eq!(column(&e, sql).await, ["Dodgers", "Dodgers", "Braves", "null", "Dodgers"]);
}

#[tokio::test]
async fn literal_only_calls() {
    let e = engine();
    let sql = "SELECT LOOKUP('dimTeams', 'teamName', 'teamID', 3), LOOKUP('dimTeams', 'teamName', 'teamID', 42), \
               LOOKUP('dimTeams', 'teamName', 'teamID', '1'), LOOKUP('dimTeams', 'teamName', 'teamID', NULL), \
               LOOKUP('dimSeasons', 'champion', 'league', 'AL', 'year', 2021)";
    assert_eq!(rows(&e, sql).await, [["Sox", "null", "Cubs", "null", "Astros"]]);
    // Beside a table's rows, a literal call is the same on every row.
    let sql = "SELECT LOOKUP('dimTeams', 'founded', 'teamID', 1) FROM games";
    assert_eq!(column(&e, sql).await, ["1876"; 5]);
}

#[tokio::test]
async fn names_in_any_case_and_with_offline() {
    let e = engine();
    for f in ["LOOKUP", "lookup", "Lookup", "lookUp", "LOOK_UP"] {
        for table in ["dimTeams", "DIMTEAMS", "dimTeams_OFFLINE"] {
            let sql = format!("SELECT {f}('{table}', 'teamName', 'teamID', TEAM) FROM GAMES ORDER BY ID");
            assert_eq!(column(&e, &sql).await, ["Cubs", "New York Mets", "null", "null", "Sox"], "{sql}");
        }
    }
}

#[tokio::test]
async fn lookup_in_where_and_group_by() {
    let e = engine();
    let sql =
        "SELECT id FROM games WHERE LOOKUP('dimTeams', 'teamName', 'teamID', team) = 'null' ORDER BY id";
    assert_eq!(column(&e, sql).await, ["3", "4"]);
    let sql = "SELECT id FROM games WHERE LOOKUP('dimTeams', 'founded', 'teamID', team) > 1900 ORDER BY id";
    assert_eq!(column(&e, sql).await, ["2", "5"]);
    // NL: games 1 and 2; AL: game 5; the default: games 3 and 4 (SUM is a DOUBLE, as in Pinot).
    let sql = "SELECT LOOKUP('dimTeams', 'league', 'teamID', team), COUNT(*), SUM(id) FROM games \
               GROUP BY LOOKUP('dimTeams', 'league', 'teamID', team) ORDER BY 1";
    assert_eq!(rows(&e, sql).await, [["AL", "1", "5.0"], ["NL", "2", "3.0"], ["null", "2", "7.0"]]);
    let sql = "SELECT LOOKUP('dimSeasons', 'champion', 'league', league, 'year', year) AS c, COUNT(*) FROM games \
               GROUP BY c HAVING COUNT(*) > 1";
    assert_eq!(rows(&e, sql).await, [["null", "2"]]);
}

#[tokio::test]
async fn plan_errors() {
    let e = engine();
    let cases = [
        ("LOOKUP('nope', 'teamName', 'teamID', team)", "dimension table does not exist: \"nope\""),
        (
            "LOOKUP('dimTeams', 'teamname', 'teamID', team)",
            "column does not exist in dimension table \"dimTeams\": \"teamname\" (column names match case: did you mean \"teamName\"?)",
        ),
        (
            "LOOKUP('dimTeams', 'teamName', 'id', team)",
            "primary key column does not exist in dimension table \"dimTeams\": \"id\"",
        ),
        (
            "LOOKUP('dimTeams', 'teamName', 'teamName', teamText)",
            "must be the dimension table's primary key columns, in order: [\"teamID\"]",
        ),
        (
            "LOOKUP('dimSeasons', 'champion', 'year', year, 'league', league)",
            "must be the dimension table's primary key columns, in order: [\"league\", \"year\"]",
        ),
        (
            "LOOKUP('dimSeasons', 'champion', 'league', league)",
            "must be the dimension table's primary key columns, in order",
        ),
        ("LOOKUP('dimTeams', 'teamName', 'teamID', team, 'x')", "an odd number"),
        ("LOOKUP('dimTeams', 'teamName', 'teamID')", "at least 4 arguments are needed, got 3"),
        (
            "LOOKUP(teamText, 'teamName', 'teamID', team)",
            "argument 1 must be a string literal naming the dimension table",
        ),
        (
            "LOOKUP('dimTeams', league, 'teamID', team)",
            "argument 2 must be a string literal naming the column",
        ),
        (
            "LOOKUP('dimTeams', 'teamName', league, team)",
            "argument 3 must be a string literal naming a primary key column",
        ),
        ("LOOKUP('dimTeams', 'teamName', 'teamID', make_array(1, 2))", "must be a single-value expression"),
    ];
    for (call, want) in cases {
        let sql = format!("SELECT {call} FROM games");
        let (kind, message) = error(&e, &sql).await;
        assert_eq!(kind, ErrorKind::Validation, "{sql}: {message}");
        assert!(message.contains(want), "{sql}: {message}");
    }
}

#[tokio::test]
async fn dimension_tables_are_tables_too_and_reload() {
    let e = engine();
    // Every row, the duplicate key too.
    assert_eq!(column(&e, "SELECT COUNT(*) FROM dimTeams").await, ["4"]);
    assert_eq!(
        column(&e, "SELECT champion FROM dimseasons WHERE year = 2021 ORDER BY 1").await,
        ["Astros", "Braves"]
    );
    // A reload replaces the table, under a name in another case too.
    e.register_dimension("DIMTEAMS", Arc::new(teams(&[(9, "Expos", 1969, "NL")]))).unwrap();
    let sql = "SELECT LOOKUP('dimTeams', 'teamName', 'teamID', team) FROM games ORDER BY id";
    assert_eq!(column(&e, sql).await, ["null", "null", "Expos", "null", "null"]);
    assert_eq!(column(&e, "SELECT teamName FROM DIMTEAMS").await, ["Expos"]);
    // Other tables' names are refused.
    let err = e.register_dimension("games", Arc::new(standard_teams())).unwrap_err();
    assert!(err.message.contains("exists already"), "{err}");
    let err = e.register_external(
        "dimTeams",
        Arc::new(MemTable::try_new(seasons().schema(), vec![vec![]]).unwrap()),
    );
    assert!(err.unwrap_err().message.contains("exists already"));
    // Removed, it is gone from both.
    assert!(e.deregister_dimension("dimteams"));
    assert!(!e.deregister_dimension("dimTeams"));
    let (kind, message) = error(&e, sql).await;
    assert_eq!(kind, ErrorKind::Validation, "{message}");
    assert!(message.contains("dimension table does not exist"), "{message}");
    let (kind, _) = error(&e, "SELECT * FROM dimTeams").await;
    assert_eq!(kind, ErrorKind::TableNotFound);
    // An empty dimension table can be queried but not looked up in (Pinot: "Dimension table is
    // not populated").
    e.register_dimension("dimEmpty", Arc::new(teams(&[]))).unwrap();
    assert_eq!(column(&e, "SELECT COUNT(*) FROM dimEmpty").await, ["0"]);
    let (kind, message) = error(&e, "SELECT LOOKUP('dimEmpty', 'teamName', 'teamID', 1)").await;
    assert_eq!(kind, ErrorKind::Validation, "{message}");
    assert!(message.contains("dimension table is not populated: \"dimEmpty\""), "{message}");
    // deregister_external removes a dimension table from LOOKUP too.
    assert!(e.deregister_external("dimSeasons"));
    assert!(e.dimensions().get("dimSeasons").is_none());
}

#[tokio::test]
async fn an_apps_own_session_can_use_the_engines_lookup() {
    let e = engine();
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_udf(e.lookup_udf());
    let batches =
        ctx.sql("SELECT lookup('dimTeams', 'founded', 'teamID', 3)").await.unwrap().collect().await.unwrap();
    let founded = batches[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0);
    assert_eq!(founded, 1901);
}
