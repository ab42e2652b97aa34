//! The `karat` binary: the headless CLI over the library. Exit codes: 0 all good, 1 a partition
//! or a blocking check failed, 2 usage or config error.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use karat::events::{Event, Events};
use karat::export::{self, DeadLetterQuery};
use karat::lake::Lake;
use karat::ledger::{Ledger, status};
use karat::pipeline::{Plan, ReplayTarget, RunOptions, RunReport, Trigger};
use karat::tui::sanitize::printable;
use karat::{KaratError, summary};

#[derive(Parser)]
#[command(
    name = "karat",
    version,
    about = "Medallion pipelines on Delta Lake: run them headless, see and replay what broke"
)]
struct Cli {
    /// The pipeline definition (default: ./karat.toml).
    #[arg(long, short = 'c', global = true, env = "KARAT_CONFIG")]
    config: Option<PathBuf>,
    /// Dashboard theme: dark, light, high-contrast, colorblind, or a path to a theme file.
    #[arg(long, global = true, default_value = "dark")]
    theme: String,
    /// Fixed clock for the dashboard (RFC 3339), for reproducible screens.
    #[arg(long, global = true, hide = true)]
    now: Option<String>,
    /// How long a writing command waits for another writer's lease (e.g. 10m); 0: exit 2 at once.
    #[arg(long, global = true, default_value = "0s", value_parser = humantime::parse_duration)]
    wait: std::time::Duration,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Open the dashboard (the default when no command is given).
    Ui {
        /// Hide every key that writes to the lake (run, replay) and never run the schedule.
        #[arg(long)]
        read_only: bool,
    },
    /// Write the current state of a dashboard view as an SVG image.
    Snapshot {
        /// overview, partitions, dead-letters, lineage, schema, runs
        #[arg(long)]
        view: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 120)]
        width: u16,
        #[arg(long, default_value_t = 36)]
        height: u16,
    },
    /// Write a commented example karat.toml (and sample data) that runs as-is.
    Init {
        /// Folder to write into.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Overwrite an existing karat.toml.
        #[arg(long)]
        force: bool,
    },
    /// Run the pipeline: ingest new source data, merge it into silver by key, recompute the gold partitions it feeds.
    Run {
        /// Only these tables (repeatable).
        #[arg(long = "table", short = 't')]
        tables: Vec<String>,
        /// Only these partitions of the selected tables (repeatable).
        #[arg(long = "partition", short = 'p')]
        partitions: Vec<String>,
        /// Print one JSON document instead of progress and a summary.
        #[arg(long)]
        json: bool,
    },
    /// Re-run partitions from bronze, then the gold partitions they feed.
    Replay {
        /// The table to replay (not with --failed).
        table: Option<String>,
        #[arg(long = "partition", short = 'p')]
        partitions: Vec<String>,
        /// Every partition whose latest state is failed or blocked.
        #[arg(long, conflicts_with_all = ["table", "partitions", "from", "to"])]
        failed: bool,
        #[arg(long, requires = "to")]
        from: Option<String>,
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// Approve the replay: run it even over `[defaults] replay_budget_rows` (see its cost
        /// with --dry-run), recorded with your name; alerts on what it rewrites are suppressed
        /// until it ends.
        #[arg(long)]
        approve: bool,
        /// Print what the replay would rewrite (partitions, rows, gold downstream, Delta
        /// versions), computed the way the replay computes it, and write nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Evaluate the `[[alert]]`s now and send what is due (runs do this after they finish; from
    /// cron between runs, stale tables and burning budgets page without waiting for one).
    Notify {
        #[arg(long)]
        json: bool,
    },
    /// Freshness, error rates and failed partitions per table.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Check the row accounting from the Delta tables and the bronze manifests alone: every
    /// processed bronze batch balances (records = silver + dead letters + superseded) and no key
    /// is held twice. Exit 1 when anything does not balance.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// What changed in table T between two Delta versions: schema, rows only before / only after
    /// / changed by key, per-column match rate, sample rows. Default: the latest version against
    /// the one before it; `--replay RUN` compares what that replay replaced with what it wrote.
    Diff {
        table: String,
        /// The newer version (default: the latest).
        #[arg(long)]
        at_version: Option<i64>,
        /// The older version (default: the one before --at-version).
        #[arg(long)]
        against: Option<i64>,
        /// The versions a replay (or any run) replaced and wrote.
        #[arg(long, conflicts_with_all = ["at_version", "against"])]
        replay: Option<String>,
        /// Match rows on these columns (default: the silver key; gold: its date, text and
        /// boolean columns).
        #[arg(long = "key")]
        key: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the lake from its bronze alone, under the current contracts, into the empty folder
    /// DIR, and compare every silver, dead-letter, superseded and gold table with it row for
    /// row. Exit 1 when any differs (what replays promise: the lake equals its rebuild).
    Rebuild {
        #[arg(long)]
        into: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The three-way schema diff of a silver table: a bronze batch's inferred schema vs the
    /// contract vs the contract version before it, with the batch's dead letters per column.
    Schema {
        table: String,
        /// The bronze batch id (default: the newest batch of the table's source).
        #[arg(long)]
        batch: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The headless daemon: runs the `[schedule]`, serves /metrics (Prometheus), /healthz and
    /// /status on `[serve] listen`; SIGTERM lets the current run finish, then exits 0.
    Serve {
        /// Overrides `[serve] listen` (e.g. 0.0.0.0:9464).
        #[arg(long)]
        listen: Option<String>,
        /// `text` (default) or `json` (one JSON object per line, for log shippers).
        #[arg(long, default_value = "text")]
        log_format: LogFormat,
    },
    /// Compact (Delta OPTIMIZE), purge deletion vectors and vacuum every table of the lake:
    /// silver, dead letters, superseded rows, gold and the ledger. Holds the writer lease;
    /// recorded in the ledger.
    Maintain {
        /// Say what would be compacted and deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Undo a replay made with a wrong fix: restore the Delta tables it rewrote to their
    /// versions before it (refused when a later run has written them since).
    Restore {
        /// The replay's run id (`karat status --json`, the Runs screen).
        #[arg(long = "run")]
        run_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge a failure no run will clear (e.g. a bronze file that failed and was
    /// removed): it then counts as resolved, with who and why kept in the ledger.
    Ack {
        /// bronze, silver or gold
        zone: karat::config::Zone,
        /// Source (bronze) or table.
        table: String,
        /// The file (bronze) or partition.
        unit: String,
        #[arg(long)]
        reason: String,
    },
    /// Show a silver table's dead letters.
    DeadLetters {
        table: String,
        #[arg(long, short = 'p')]
        partition: Option<String>,
        /// Only rows whose reason or rule contains this text.
        #[arg(long, short = 'r')]
        reason: Option<String>,
        /// At most this many rows (default: every matching row, read a page at a time).
        #[arg(long, short = 'n')]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
        /// Write every matching row (or --limit of them) as NDJSON to this file, streamed.
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// Create a demo lake with realistic, faulty data and run the pipeline over it day by day.
    Demo {
        /// Where to create it.
        #[arg(default_value = "karat-demo")]
        dir: PathBuf,
        /// Print the summary instead of opening the dashboard.
        #[arg(long)]
        headless: bool,
        /// Orders per day.
        #[arg(long, default_value_t = 2000)]
        orders_per_day: usize,
    },
    /// Measure bronze → silver → gold throughput and peak memory on generated data.
    Bench {
        /// Line counts to run (comma separated).
        #[arg(long, value_delimiter = ',', default_value = "1000000,5000000")]
        lines: Vec<usize>,
        /// Daily files per run.
        #[arg(long, default_value_t = 5)]
        days: usize,
        /// Scratch folder (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Instead: the daily incremental bench, N days with one file and one run each.
        #[arg(long)]
        daily: Option<usize>,
        /// Lines per day of the daily bench.
        #[arg(long, default_value_t = 500_000)]
        per_day: usize,
        /// Instead: the dashboard's render benchmark (5 tables x 1,000 partitions, ms/frame).
        #[arg(long)]
        render: bool,
        /// Instead: the ledger after N runs, read before and after `karat maintain`.
        #[arg(long)]
        ledger: Option<usize>,
        /// Keep the daily bench's folder (its data, lake and ledger) to look at afterwards.
        #[arg(long)]
        keep: bool,
        /// Measure each size this many times on the same files (karat and the DuckDB
        /// reference taking turns to go first) and print the medians.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// The daily bench's silver table deletes superseded rows by deletion vector
        /// (`deletion_vectors = true`) instead of rewriting their partitions.
        #[arg(long)]
        deletion_vectors: bool,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // glibc's malloc with one arena (see the module): may start karat again, in this process
    karat::malloc::use_one_arena();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // fault points for the crash tests (a no-op unless built with the `failpoints` feature)
    let _faults = fail::FailScenario::setup();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("karat: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let usage = e
                .downcast_ref::<KaratError>()
                .is_some_and(KaratError::is_usage);
            eprintln!("karat: error: {}", printable(&format!("{e:#}")));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn config_path(cli_config: &Option<PathBuf>) -> PathBuf {
    cli_config
        .clone()
        .unwrap_or_else(|| PathBuf::from("karat.toml"))
}

async fn load(config: &Option<PathBuf>, wait: std::time::Duration) -> anyhow::Result<(Plan, Lake)> {
    let path = config_path(config);
    if !path.exists() {
        return Err(KaratError::Usage(format!(
            "no pipeline definition at {} (use --config, or `karat init` to write an example)",
            path.display()
        ))
        .into());
    }
    let plan = Plan::load(&path).await?;
    let lake = Lake::open(&plan.config.lake_url)?.with_writer_wait(wait);
    Ok((plan, lake))
}

/// Writes plain output; control characters from data are escaped (lines and tabs kept).
#[allow(clippy::print_stdout)]
fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(printable(text).as_bytes());
    let _ = o.flush();
}

fn json_out<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    out(&format!("{}\n", serde_json::to_string_pretty(v)?));
    Ok(())
}

fn clock(cli_now: &Option<String>) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    match cli_now {
        None => Ok(None),
        Some(t) => Ok(Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| KaratError::Usage(format!("--now {t}: {e}")))?
                .with_timezone(&chrono::Utc),
        )),
    }
}

/// How the dashboard is opened.
struct Ui<'a> {
    theme: &'a str,
    now: &'a Option<String>,
    read_only: bool,
}

async fn dashboard(config: PathBuf, plan: Plan, lake: Lake, ui: Ui<'_>) -> anyhow::Result<u8> {
    if !std::io::stdout().is_terminal() {
        return Err(KaratError::Usage(
            "the dashboard needs a terminal; use `karat status` or `karat run` headless".into(),
        )
        .into());
    }
    let theme = karat::tui::theme::Theme::load(ui.theme)?;
    let opts = karat::tui::DashboardOptions {
        config_path: config,
        theme,
        clock: clock(ui.now)?,
        read_only: ui.read_only,
    };
    karat::tui::run(plan, lake, opts).await?;
    Ok(0)
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let command = cli.command.unwrap_or(Command::Ui { read_only: false });
    match command {
        Command::Ui { read_only } => {
            let (plan, lake) = load(&cli.config, cli.wait).await?;
            let ui = Ui {
                theme: &cli.theme,
                now: &cli.now,
                read_only,
            };
            dashboard(config_path(&cli.config), plan, lake, ui).await
        }
        Command::Snapshot {
            view,
            out: path,
            width,
            height,
        } => {
            let (plan, lake) = load(&cli.config, cli.wait).await?;
            let v = karat::tui::action::View::from_slug(&view).ok_or_else(|| {
                KaratError::Usage(format!(
                    "no view \"{view}\": overview, partitions, dead-letters, lineage, schema, runs"
                ))
            })?;
            let theme = karat::tui::theme::Theme::load(&cli.theme)?;
            let now = clock(&cli.now)?.unwrap_or_else(chrono::Utc::now);
            let app = karat::tui::headless_state(&plan, &lake, theme, v, now).await?;
            let svg = karat::tui::snapshot_svg(&app, width, height);
            std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
            Ok(0)
        }
        Command::Init { dir, force } => {
            let path = karat::config::example::write_example(&dir, force)?;
            eprintln!(
                "wrote {} and sample data; run `karat run` in {}",
                path.display(),
                dir.display()
            );
            Ok(0)
        }
        Command::Run {
            tables,
            partitions,
            json,
        } => {
            let (plan, lake) = load(&cli.config, cli.wait).await?;
            let mut command = String::from("karat run");
            for t in &tables {
                command.push_str(&format!(" --table {t}"));
            }
            for p in &partitions {
                command.push_str(&format!(" --partition {p}"));
            }
            let opts = RunOptions {
                trigger: Trigger::Cli,
                tables,
                partitions,
                command,
            };
            let (events, progress) = progress(json);
            let report = karat::pipeline::run(&plan, &lake, opts, &events).await;
            drop(events);
            let _ = progress.await;
            finish_run(&plan, &lake, report?, json).await
        }
        Command::Replay {
            table,
            partitions,
            failed,
            from,
            to,
            dry_run,
            approve,
            json,
        } => {
            let (plan, lake) = load(&cli.config, cli.wait).await?;
            let target = if failed {
                ReplayTarget::Failed
            } else {
                let table = table
                    .ok_or_else(|| KaratError::Usage("replay needs a TABLE, or --failed".into()))?;
                match (from, to) {
                    (Some(from), Some(to)) => ReplayTarget::Range { table, from, to },
                    _ => {
                        if partitions.is_empty() {
                            return Err(KaratError::Usage(format!(
                                "replay {table} needs --partition P, or --from A --to B"
                            ))
                            .into());
                        }
                        ReplayTarget::Partitions { table, partitions }
                    }
                }
            };
            if dry_run {
                return dry_run_replay(&plan, &lake, &target, json).await;
            }
            let approval = if approve {
                Some(approval_of(&plan, &lake, &target).await?)
            } else {
                karat::pipeline::within_budget(&plan, &lake, &target).await?;
                None
            };
            let (events, progress) = progress(json);
            let report =
                karat::pipeline::replay_approved(&plan, &lake, target, approval, &events).await;
            drop(events);
            let _ = progress.await;
            finish_run(&plan, &lake, report?, json).await
        }
        Command::Notify { json } => {
            let (plan, lake) = load(&cli.config, cli.wait).await?;
            let records = karat::alert::notify(&plan, &lake, None).await?;
            if json {
                json_out(&records)?;
            } else {
                out(&summary::alert_records(&records));
            }
            Ok(0)
        }
        Command::Status { json } => {
            let (plan, lake) = load(&cli.config, cli.wait).await?;
            let s = status_of(&plan, &lake).await?;
            if json {
                json_out(&s)?;
            } else {
                out(&summary::status_table(&s));
            }
            Ok(if s.unhealthy() { 1 } else { 0 })
        }
        Command::Ack {
            zone,
            table,
            unit,
            reason,
        } => {
            let (_, lake) = load(&cli.config, cli.wait).await?;
            let by = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let step = karat::pipeline::ack::ack(&lake, zone, &table, &unit, &reason, &by).await?;
            out(&format!("{}\n", step.messages.unwrap_or_default()));
            Ok(0)
        }
        Command::Restore { run_id, json } => {
            let (plan, lake) = load(&cli.config, cli.wait).await?;
            let r = karat::pipeline::restore(&plan, &lake, &run_id).await?;
            send_alerts(&plan, &lake, Some(&r.run_id)).await;
            if json {
                json_out(&r)?;
            } else {
                let mut text = format!("restored the tables replay {} rewrote:\n", r.restored_run);
                for (table, from, to) in &r.tables {
                    text.push_str(&format!("  {table}: version {from} → as of version {to}\n"));
                }
                text.push_str(&format!(
                    "{} partition(s) back to their state before it (run {})\n",
                    r.partitions, r.run_id
                ));
                out(&text);
            }
            Ok(0)
        }
        Command::Verify { json } => {
            let (plan, lake) = load(&cli.config, cli.wait).await?;
            let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            let v = karat::pipeline::verify(&plan, &lake).await?;
            karat::pipeline::verify::record(&lake, &v, &started).await?;
            send_alerts(&plan, &lake, None).await;
            if json {
                json_out(&v)?;
            } else {
                let lines: Vec<String> = v.lines().iter().map(|l| karat_escape(l)).collect();
                out(&(lines.join("\n") + "\n"));
            }
            Ok(if v.ok() { 0 } else { 1 })
        }
        Command::Diff {
            table,
            at_version,
            against,
            replay,
            key,
            json,
        } => {
            let (plan, lake) = load(&cli.config, cli.wait).await?;
            let versions = match replay {
                Some(run) => karat::schema::table_diff::Versions::Replay(run),
                None => karat::schema::table_diff::Versions::Given {
                    before: against,
                    after: at_version,
                },
            };
            let d = karat::schema::table_diff::diff(&plan, &lake, &table, &key, &versions).await?;
            if json {
                json_out(&d)?;
            } else {
                let lines: Vec<String> = d.lines().iter().map(|l| karat_escape(l)).collect();
                out(&(lines.join("\n") + "\n"));
            }
            Ok(0)
        }
        Command::Rebuild { into, json } => {
            let (plan, lake) = load(&cli.config, cli.wait).await?;
            std::fs::create_dir_all(&into)
                .map_err(|e| KaratError::Usage(format!("--into {}: {e}", into.display())))?;
            let dir = into
                .canonicalize()
                .map_err(|e| KaratError::Usage(format!("--into {}: {e}", into.display())))?;
            let url = url::Url::from_directory_path(&dir).map_err(|_| {
                KaratError::Usage(format!("--into {}: not a folder", dir.display()))
            })?;
            let target = karat::lake::Lake::open(&url)?;
            let r = karat::pipeline::rebuild(&plan, &lake, &target).await?;
            if json {
                json_out(&r)?;
            } else {
                out(&(r.lines().join("\n") + "\n"));
            }
            Ok(if r.equal() { 0 } else { 1 })
        }
        Command::Serve { listen, log_format } => {
            init_logs(log_format);
            let (plan, lake) = load(&cli.config, cli.wait).await?;
            karat::serve::serve(plan, lake, listen).await?;
            Ok(0)
        }
        Command::Maintain { dry_run, json } => {
            let (plan, lake) = load(&cli.config, cli.wait).await?;
            let r = karat::pipeline::maintain(&plan, &lake, dry_run).await?;
            if json {
                json_out(&r)?;
            } else {
                out(&summary::maintenance_lines(&r));
            }
            Ok(0)
        }
        Command::Schema { table, batch, json } => {
            let (plan, lake) = load(&cli.config, cli.wait).await?;
            let d = karat::schema::three_way_of(&plan, &lake, &table, batch.as_deref()).await?;
            if json {
                json_out(&d)?;
            } else {
                out(&(d.lines().join("\n") + "\n"));
            }
            Ok(0)
        }
        Command::DeadLetters {
            table,
            partition,
            reason,
            limit,
            json,
            export: to_file,
        } => {
            let (plan, lake) = load(&cli.config, cli.wait).await?;
            let t = plan.config.table_or_err(&table)?;
            if t.silver().is_none() {
                return Err(KaratError::Usage(format!(
                    "{table} is a {} table; dead letters belong to silver tables",
                    t.zone
                ))
                .into());
            }
            let q = DeadLetterQuery {
                partition,
                reason,
                rule: None,
                limit,
                offset: 0,
            };
            show_dead_letters(&lake, &table, q, json, to_file).await
        }
        Command::Demo {
            dir,
            headless,
            orders_per_day,
        } => {
            let code = demo(&dir, orders_per_day).await?;
            if headless || !std::io::stdout().is_terminal() {
                return Ok(code);
            }
            let config = dir.join("karat.toml");
            let plan = Plan::load(&config).await?;
            let lake = Lake::open(&plan.config.lake_url)?;
            let ui = Ui {
                theme: &cli.theme,
                now: &cli.now,
                read_only: false,
            };
            dashboard(config, plan, lake, ui).await
        }
        Command::Bench {
            ledger: Some(n),
            dir,
            json,
            ..
        } => {
            let d = fresh_bench_dir(dir, "bench-ledger")?;
            let r = karat::bench::ledger::run_ledger(&d, n).await?;
            let _ = std::fs::remove_dir_all(&d);
            if json {
                json_out(&r)?;
            } else {
                out(&format!(
                    "ledger: {} runs written in {:.1}s; runs+steps {} files, read + status {:.0} ms; \
                     karat maintain {:.1}s → {} files, read + status {:.0} ms\n",
                    r.runs,
                    r.write_seconds,
                    r.files_before,
                    r.read_ms_before,
                    r.maintain_seconds,
                    r.files_after,
                    r.read_ms_after
                ));
            }
            Ok(0)
        }
        Command::Bench {
            render: true,
            dir,
            json,
            ..
        } => {
            let d = match dir {
                Some(d) => d.join("bench-render"),
                None => tempdir()?,
            };
            std::fs::create_dir_all(&d)?;
            let r = karat::tui::bench::run(&d, 200).await?;
            if json {
                json_out(&r)?;
            } else {
                let mut text = format!(
                    "render: {} tables x {} partitions; model built in {:.1} ms\n",
                    r.tables, r.partitions, r.model_ms
                );
                for fr in &r.frames {
                    text.push_str(&format!(
                        "  {:<20} {:>7.2} ms/frame\n",
                        fr.screen, fr.ms_per_frame
                    ));
                }
                out(&text);
            }
            Ok(0)
        }
        Command::Bench {
            daily: Some(n),
            per_day,
            dir,
            keep,
            deletion_vectors,
            json,
            ..
        } => {
            let d = fresh_bench_dir(dir, "bench-daily")?;
            let r = karat::bench::daily::run_daily(&d, n, per_day, deletion_vectors).await?;
            if keep {
                eprintln!("kept {}", d.display());
            } else {
                let _ = std::fs::remove_dir_all(&d);
            }
            if json {
                json_out(&r)?;
            } else {
                let mut text = String::new();
                for f in &r.days {
                    text.push_str(&format!(
                        "day {:>3}: {:>9} lines {:>7.2}s  peak {:>7.0} MB  {} failed\n",
                        f.day,
                        f.lines,
                        f.seconds,
                        f.peak_memory_mb.unwrap_or(0.0),
                        f.partitions_failed
                    ));
                }
                text.push_str(&format!(
                    "last day / first day: time {:.2}x, memory {}\n",
                    r.time_ratio,
                    r.memory_ratio
                        .map(|m| format!("{m:.2}x"))
                        .unwrap_or_else(|| "n/a".into())
                ));
                out(&text);
            }
            Ok(0)
        }
        Command::Bench {
            lines,
            days,
            dir,
            rounds,
            json,
            ..
        } => {
            let mut results = Vec::new();
            for n in lines {
                let tmp;
                let d = match &dir {
                    Some(d) => {
                        let d = d.join(format!("bench-{n}"));
                        if d.exists() {
                            std::fs::remove_dir_all(&d)
                                .with_context(|| format!("clearing {}", d.display()))?;
                        }
                        d
                    }
                    None => {
                        tmp = tempdir()?;
                        tmp.join(format!("bench-{n}"))
                    }
                };
                eprintln!("bench: {n} lines over {days} files in {}", d.display());
                let r = karat::bench::rounds::run_rounds(&d, n, days, rounds).await?;
                if !json {
                    let mut text = String::new();
                    for round in &r.rounds {
                        text.push_str(&karat::bench::rounds::describe(round));
                    }
                    if r.rounds.len() > 1 {
                        text.push_str(&karat::bench::rounds::describe_medians(&r));
                    }
                    out(&text);
                }
                if dir.is_none() {
                    let _ = std::fs::remove_dir_all(&d);
                }
                results.push(r);
            }
            if json {
                json_out(&results)?;
            }
            Ok(0)
        }
    }
}

/// `karat dead-letters`: the rows matching `q` written to a file (streamed), as JSON, or as
/// text after the counts by rule and offending value; never silently capped.
async fn show_dead_letters(
    lake: &Lake,
    table: &str,
    q: DeadLetterQuery,
    json: bool,
    to_file: Option<PathBuf>,
) -> anyhow::Result<u8> {
    if let Some(path) = to_file {
        let n = match q.limit {
            None => export::export_all(lake, table, &q, &path).await?,
            Some(_) => {
                let rows = export::dead_letters(lake, table, &q).await?;
                export::write_ndjson(&path, &rows)?;
                rows.len() as u64
            }
        };
        eprintln!("wrote {n} row(s) to {}", path.display());
        return Ok(0);
    }
    if json {
        json_out(&export::dead_letters(lake, table, &q).await?)?;
        return Ok(0);
    }
    out(&rule_lines(lake, table, q.partition.as_deref()).await?);
    // rows a page at a time, each printed as it arrives
    let mut page = DeadLetterQuery {
        limit: Some(q.limit.unwrap_or(DEAD_LETTER_PAGE).min(DEAD_LETTER_PAGE)),
        ..q.clone()
    };
    let mut shown = 0usize;
    loop {
        let rows = export::dead_letters(lake, table, &page).await?;
        let mut text = String::new();
        for r in &rows {
            text.push_str(&format!(
                "{} {}:{} [{}]\n    {}\n    raw: {}\n",
                r.partition,
                r.file,
                r.line,
                r.batch_id,
                karat_escape(&r.reasons.join("; ")),
                karat_escape(&r.raw)
            ));
        }
        out(&text);
        shown += rows.len();
        page.offset += rows.len();
        let wanted = q.limit.unwrap_or(usize::MAX);
        if rows.len() < page.limit.unwrap_or(0) || shown >= wanted {
            break;
        }
        page.limit = Some((wanted - shown).min(DEAD_LETTER_PAGE));
    }
    Ok(0)
}

/// Rows printed per page by `karat dead-letters`.
const DEAD_LETTER_PAGE: usize = 1_000;

/// The counts by rule, with each rule's most frequent offending values.
async fn rule_lines(lake: &Lake, table: &str, partition: Option<&str>) -> anyhow::Result<String> {
    let export::RuleSummary { counts, values } =
        export::rule_summary(lake, table, partition, 5).await?;
    let mut text = String::from("dead letters by rule (offending values):\n");
    for (r, n) in &counts {
        let vs: Vec<String> = values
            .get(r)
            .into_iter()
            .flatten()
            .map(|(v, n)| format!("{} ×{n}", karat_escape(v)))
            .collect();
        text.push_str(&format!("  {n:>8}  {r}  {}\n", vs.join(", ")));
    }
    text.push('\n');
    Ok(text)
}

/// `karat replay --dry-run`: the preview, as lines or JSON; nothing is written.
async fn dry_run_replay(
    plan: &Plan,
    lake: &Lake,
    target: &ReplayTarget,
    json: bool,
) -> anyhow::Result<u8> {
    let preview = karat::pipeline::preview(plan, lake, target).await?;
    if json {
        json_out(&preview)?;
    } else {
        let lines: Vec<String> = preview.lines().iter().map(|l| karat_escape(l)).collect();
        out(&(lines.join("\n") + "\n"));
    }
    Ok(0)
}

/// Shows untrusted text with control characters escaped.
fn karat_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// An empty folder for a bench: `DIR/name` under `--dir`, else a temporary one.
fn fresh_bench_dir(dir: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    let d = match dir {
        Some(d) => d.join(name),
        None => tempdir()?,
    };
    if d.exists() {
        std::fs::remove_dir_all(&d).with_context(|| format!("clearing {}", d.display()))?;
    }
    Ok(d)
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("karat-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

async fn status_of(plan: &Plan, lake: &Lake) -> anyhow::Result<status::StatusReport> {
    let ledger = Ledger::new(lake);
    let runs = ledger.runs().await?;
    let steps = ledger.steps().await?;
    Ok(status::compute(
        &plan.config,
        &runs,
        &steps,
        chrono::Utc::now(),
    ))
}

async fn finish_run(plan: &Plan, lake: &Lake, report: RunReport, json: bool) -> anyhow::Result<u8> {
    send_alerts(plan, lake, Some(&report.run_id)).await;
    send_lineage(plan, lake, &report).await;
    if json {
        json_out(&report)?;
    } else {
        out(&summary::run_lines(&report));
        let s = status_of(plan, lake).await?;
        out(&summary::status_table(&s));
    }
    Ok(report.exit_code() as u8)
}

/// `karat serve`'s logs: karat's own at info, everything else (deltalake's kernel logs every
/// snapshot at info) from warn up; plain lines on stderr.
fn init_logs(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let targets = tracing_subscriber::filter::Targets::new()
        .with_target("karat", tracing::Level::INFO)
        .with_default(tracing::Level::WARN);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(layer)
            .with(targets)
            .init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(layer.json())
            .with(targets)
            .init(),
    }
}

/// How `karat serve` writes its logs.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The approval `--approve` records: who, and (when a budget is set) what the plan reprocesses.
async fn approval_of(
    plan: &Plan,
    lake: &Lake,
    target: &ReplayTarget,
) -> anyhow::Result<karat::pipeline::Approval> {
    let budget = plan.config.replay_budget_rows;
    let records = match budget {
        Some(_) => Some(replay_records(plan, lake, target).await?),
        None => None,
    };
    Ok(karat::pipeline::Approval {
        user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        records,
        budget,
    })
}

/// Records a replay of `target` would reprocess, from its preview.
async fn replay_records(plan: &Plan, lake: &Lake, target: &ReplayTarget) -> anyhow::Result<u64> {
    Ok(karat::pipeline::preview(plan, lake, target)
        .await?
        .records())
}

/// Sends the run's OpenLineage events; a receiver that refuses them never fails the run.
async fn send_lineage(plan: &Plan, lake: &Lake, report: &RunReport) {
    match karat::lineage::openlineage::emit(plan, lake, report).await {
        Ok((_, Some(e))) => eprintln!("openlineage: not every event was delivered: {e}"),
        Ok(_) => {}
        Err(e) => eprintln!("openlineage: {e}"),
    }
}

/// Sends the `[[alert]]` notifications due after a run; a receiver that refuses them never fails
/// the run (they are recorded and tried again next time), but it is said on stderr.
async fn send_alerts(plan: &Plan, lake: &Lake, run_id: Option<&str>) {
    match karat::alert::notify(plan, lake, run_id).await {
        Ok(records) => {
            for r in records.iter().filter(|r| !r.delivered && !r.suppressed()) {
                eprintln!(
                    "alert {}: {} notification not delivered after {} attempt(s): {}",
                    r.alert,
                    r.status,
                    r.attempts,
                    r.error.as_deref().unwrap_or("")
                );
            }
        }
        Err(e) => eprintln!("alerts: {e}"),
    }
}

async fn demo(dir: &Path, orders_per_day: usize) -> anyhow::Result<u8> {
    if dir.join("lake").exists() {
        eprintln!(
            "{} already holds a demo lake: using it as it is (remove the folder for a fresh one)",
            dir.display()
        );
        let plan = Plan::load(&dir.join("karat.toml")).await?;
        let lake = Lake::open(&plan.config.lake_url)?;
        let s = status_of(&plan, &lake).await?;
        out(&summary::status_table(&s));
        return Ok(if s.unhealthy() { 1 } else { 0 });
    }
    let days = karat::demo::generate(dir, orders_per_day)?;
    let plan = Plan::load(&dir.join("karat.toml")).await?;
    let lake = Lake::open(&plan.config.lake_url)?;
    eprintln!(
        "demo: {} days of data for 2 sources in {}",
        days.len(),
        dir.display()
    );
    let mut last = None;
    for day in &days {
        karat::demo::arrive(dir, day)?;
        let (events, progress) = progress(false);
        let mut opts = RunOptions::new(Trigger::Demo);
        opts.command = format!("karat run   # files of {} arrived", day.date);
        let report = karat::pipeline::run(&plan, &lake, opts, &events).await;
        drop(events);
        let _ = progress.await;
        let report = report?;
        out(&format!(
            "--- {} ---\n{}",
            day.date,
            summary::run_lines(&report)
        ));
        last = Some(report);
    }
    let s = status_of(&plan, &lake).await?;
    out(&format!("\n{}", summary::status_table(&s)));
    out(&format!(
        "\nThe demo lake is in {0}. Next:\n  karat -c {0}/karat.toml dead-letters orders --partition {1}\n  karat -c {0}/karat.toml replay orders --partition {1}\n",
        dir.display(),
        karat::demo::BAD_DAY
    ));
    Ok(last.map(|r| r.exit_code() as u8).unwrap_or(0))
}

/// Renders engine events: progress bars on a terminal, log lines otherwise, nothing for --json.
fn progress(quiet: bool) -> (Events, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let tty = std::io::stderr().is_terminal();
    let handle = tokio::spawn(async move {
        let multi = MultiProgress::new();
        let mut bars: HashMap<String, ProgressBar> = HashMap::new();
        let style = ProgressStyle::with_template(
            "{prefix:>16} [{bar:30}] {human_pos}/{human_len} rows {per_sec} {msg}",
        )
        .expect("static template")
        .progress_chars("=> ");
        while let Some(e) = rx.recv().await {
            if quiet {
                continue;
            }
            match e {
                Event::Started { stage, name, total } => {
                    let key = format!("{stage} {name}");
                    if tty {
                        let bar = multi.add(ProgressBar::new(total.unwrap_or(0)));
                        bar.set_style(style.clone());
                        bar.set_prefix(key.clone());
                        bars.insert(key, bar);
                    } else {
                        eprintln!(
                            "{key}: started{}",
                            total.map(|t| format!(" ({t} rows)")).unwrap_or_default()
                        );
                    }
                }
                Event::Progress { stage, name, rows } => {
                    if let Some(b) = bars.get(&format!("{stage} {name}")) {
                        b.inc(rows);
                    }
                }
                Event::Finished {
                    stage,
                    name,
                    rows,
                    ok,
                    detail,
                } => {
                    let key = format!("{stage} {name}");
                    let mark = if ok { "ok" } else { "FAILED" };
                    let detail = printable(&detail).into_owned();
                    match bars.get(&key) {
                        Some(b) => b.finish_with_message(format!("{mark}: {detail}")),
                        None => eprintln!("{key}: {mark}: {rows} rows; {detail}"),
                    }
                }
                Event::Partition { .. } => {}
                Event::Note { message } => {
                    let message = printable(&message).into_owned();
                    if tty {
                        let _ = multi.println(message);
                    } else {
                        eprintln!("{message}");
                    }
                }
            }
        }
    });
    (Events::new(tx), handle)
}
