//! Limits that hold for every query and for all of them together: expressions too deep are
//! refused before they are parsed (no stack overflow), functions cannot make huge values (not
//! even while planning folds constants), results are capped in bytes as well as rows, one
//! memory pool bounds all queries, and admission refuses the excess at once.

mod common;

use common::*;
use shoal_query::{ErrorKind, QueryOptions};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_expressions_are_refused_before_planning_and_long_chains_still_run() {
    let (engine, _t, _events, _dir) = events_table(1, 1000, 0, QueryOptions::default());
    let chain = |n: usize| format!("SELECT {} AS s", vec!["1"; n].join("+"));
    // 100 terms overflowed the stack once; now it is an answer.
    let r = engine.execute(&chain(100)).await.unwrap();
    let v = arrow::compute::cast(r.batches[0].column(0), &arrow::datatypes::DataType::Int64).unwrap();
    assert_eq!(arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&v).value(0), 100);
    // The deepest allowed, over a column (evaluated per row, not folded), runs.
    let deep = format!("SELECT sum({}) FROM events", vec!["duration_ms"; 400].join("+"));
    engine.execute(&deep).await.unwrap_or_else(|e| panic!("a chain at the limit runs: {e}"));
    for sql in [
        chain(50_000),
        format!("SELECT {}1{}", "(".repeat(3000), ")".repeat(3000)),
        format!("SELECT count(*) FROM events WHERE {}", vec!["duration_ms > 0"; 30_000].join(" OR ")),
    ] {
        let e = engine.execute(&sql).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation, "{e}");
        assert!(e.message.contains("deep"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_cannot_make_huge_values_even_when_folding_constants() {
    let (engine, _t, _events, _dir) = events_table(1, 1000, 0, QueryOptions::default());
    let engine = Arc::new(engine);
    // Twice at once, as the review did: both refused, nothing of 200 MB is made.
    let a = tokio::spawn({
        let e = Arc::clone(&engine);
        async move { e.execute("SELECT repeat('x', 200000000)").await }
    });
    let b = tokio::spawn({
        let e = Arc::clone(&engine);
        async move { e.execute("SELECT repeat('x', 200000000)").await }
    });
    for r in [a.await.unwrap(), b.await.unwrap()] {
        let e = r.unwrap_err();
        assert!(e.message.contains("repeat") && e.message.contains("limit"), "{e}");
    }
    for sql in [
        "SELECT lpad('x', 1000000000)",
        "SELECT rpad('x', 1000000000, 'y')",
        "SELECT array_repeat(1, 1000000000)",
        "SELECT range(0, 10000000000)",
        "SELECT generate_series(1, 10000000000, 1)",
        // Per row, from a column: checked at execution too.
        "SELECT max(length(repeat(country, duration_ms * 100000))) FROM events",
    ] {
        let e = engine.execute(sql).await.unwrap_err();
        assert!(e.message.contains("limit"), "{sql}: {e}");
    }
    // Small values are made as before.
    engine.execute("SELECT repeat('ab', 3), lpad('x', 5), range(0, 5)").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_cut_at_the_byte_limit() {
    let options = QueryOptions::default().with_max_result_bytes(256 << 10);
    let (engine, _t, _events, _dir) = events_table(1, 20_000, 0, options);
    let r = engine.execute("SELECT * FROM events").await.unwrap();
    assert!(r.truncated, "cut at 256 KiB");
    let bytes: usize = r.batches.iter().map(|b| b.get_array_memory_size()).sum();
    let rows: usize = r.batches.iter().map(|b| b.num_rows()).sum();
    assert!(rows < 20_000, "{rows} rows");
    assert!(bytes <= 256 << 10 || r.batches.len() == 1, "{bytes} bytes in {} batches", r.batches.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_memory_pool_bounds_every_query() {
    // Each query may hold 512 MiB, but all of them together only 1 MiB.
    let options = QueryOptions::default().with_memory_limit(512 << 20).with_total_memory(1 << 20);
    let (engine, _t, _events, _dir) = events_table(1, 50_000, 0, options);
    let e = engine
        .execute("SELECT event_id, count(*) FROM events GROUP BY event_id ORDER BY 2 DESC")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResourceLimit, "{e}");
    assert_eq!(e.kind.pinot_code(), 245);
    assert!(e.message.contains("server's memory"), "{e}");
    // A small query still runs.
    engine.execute("SELECT count(*) FROM events").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_past_the_running_and_waiting_places_are_refused_at_once() {
    let options = QueryOptions::default()
        .with_max_concurrent_queries(1)
        .with_max_queued_queries(1)
        .with_timeout(Duration::from_secs(4));
    let (engine, _t, _events, _dir) = events_table(1, 20_000, 0, options);
    let engine = Arc::new(engine);
    let slow = "SELECT count(*) FROM events a CROSS JOIN events b WHERE a.duration_ms + b.duration_ms = 7";
    let running = tokio::spawn({
        let e = Arc::clone(&engine);
        async move { e.execute(slow).await }
    });
    // The first holds the one place, the second waits for it, the third is refused.
    while engine.running_queries() < 1 {
        tokio::task::yield_now().await;
    }
    let waiting = tokio::spawn({
        let e = Arc::clone(&engine);
        async move { e.execute("SELECT count(*) FROM events").await }
    });
    while engine.waiting_queries() < 1 {
        tokio::task::yield_now().await;
    }
    let refused = engine.execute("SELECT 1").await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Overloaded, "{refused}");
    // Pinot's SERVER_OUT_OF_CAPACITY: what its server's scheduler answers when its queue is full.
    assert_eq!(refused.kind.pinot_code(), 211);
    assert_eq!(running.await.unwrap().unwrap_err().kind, ErrorKind::Timeout);
    // The waiting one was queued, not refused: it ran once the place was free, or its own time
    // ran out while it waited behind the join (Pinot's QUERY_SCHEDULING_TIMEOUT, 240) or after.
    match waiting.await.unwrap() {
        Ok(_) => {}
        Err(e) => assert!(matches!(e.kind, ErrorKind::SchedulingTimeout | ErrorKind::Timeout), "{e}"),
    }
    // With the places free again, queries run.
    while engine.running_queries() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.execute("SELECT count(*) FROM events").await.unwrap();
}

/// On a runtime with one thread, a query that would run for hours must still give way: its
/// time limit fires (the limit's timer runs on the same thread), and another query runs after
/// it. Without operators that yield, the join below would hold the thread to its end.
#[tokio::test(flavor = "current_thread")]
async fn a_long_query_gives_way_on_a_single_thread() {
    let options = QueryOptions::default().with_timeout(Duration::from_secs(1));
    let (engine, _t, _events, _dir) = events_table(1, 4000, 0, options);
    let e = engine
        .execute("SELECT count(*) FROM events a JOIN generate_series(1, 100000000000) g ON a.duration_ms = g.value")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    engine.execute("SELECT count(*) FROM events").await.unwrap();
}

/// A join without a key over too many pairs would scan inside one step for hours, where no
/// time limit can stop it: it is refused before it runs. Within the limit it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_without_a_key_over_too_many_pairs_is_refused() {
    let options = QueryOptions::default().with_max_join_pairs(10_000_000);
    let (engine, _t, _events, _dir) = events_table(1, 4000, 0, options);
    let e = engine
        .execute("SELECT count(*) FROM events a CROSS JOIN events b CROSS JOIN events c WHERE a.duration_ms + b.duration_ms + c.duration_ms = -1")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResourceLimit, "{e}");
    assert!(e.message.contains("pairs"), "{e}");
    let e = engine
        .execute("SELECT count(*) FROM events a JOIN events b ON a.duration_ms < b.duration_ms")
        .await
        .unwrap_err();
    assert!(e.message.contains("16000000 pairs"), "{e}");
    let r = engine
        .execute("SELECT count(*) FROM events a CROSS JOIN (SELECT * FROM events LIMIT 2000) b")
        .await
        .unwrap();
    let n = arrow::compute::cast(r.batches[0].column(0), &arrow::datatypes::DataType::Int64).unwrap();
    assert_eq!(arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&n).value(0), 8_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorts_over_many_partitions_fit_a_small_memory_limit() {
    // Eight hash partitions a core: 32 final aggregations on four cores, each sorted before
    // the merge (SortExec with its partitions kept), within a limit of 64 MiB.
    let options = QueryOptions::default().with_target_partitions(4).with_memory_limit(64 << 20);
    let (engine, _t, _events, _dir) = events_table(1, 20_000, 0, options);
    let sql = "SELECT user_id, count(*) AS n FROM events GROUP BY user_id ORDER BY n DESC, user_id";
    let r = engine.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let rows: Vec<(String, i64)> = r
        .batches
        .iter()
        .flat_map(|b| {
            let ids = arrow::array::AsArray::as_string::<i32>(b.column(0)).clone();
            let n = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Int64).unwrap();
            let n = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&n).clone();
            (0..b.num_rows()).map(move |i| (ids.value(i).to_string(), n.value(i))).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(rows.iter().map(|(_, n)| n).sum::<i64>(), 20_000, "every row counted once");
    assert!(rows.len() > 1_000, "many groups, so every partition sorts some: {}", rows.len());
    assert!(rows.windows(2).all(|w| w[0].1 > w[1].1 || (w[0].1 == w[1].1 && w[0].0 < w[1].0)), "in order");
}
