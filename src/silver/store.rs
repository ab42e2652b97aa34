//! The three Delta tables behind a silver table, read and written together: the silver rows
//! (`silver/<table>`), its dead letters (`dead_letters/<table>`, replaced per bronze batch) and
//! its superseded rows (`_karat/superseded/<table>`, stored under the partition of the version
//! that won, so a key's winner and losers always move together).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Schema, SchemaRef};
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::common::{Column, JoinType};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::logical_expr::{Expr, cast, lit};
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;

use super::contract::{
    Contract, DEAD_LETTER_PARTITION, SUPERSEDED_BY, WINNER_PARTITION, dead_letter_schema, ident,
};
use super::written_keys::Scanned;
use crate::config::Zone;
use crate::error::{KaratError, KaratResult};
use crate::events::Events;
use crate::lake::delta::{self, Replace};
use crate::lake::{Lake, layout};
use crate::lake::{append, compact, deletion, lookup, rewrite, stats};

/// A DataFusion session over a silver table's Delta tables, as they are now.
pub struct Store {
    lake: Lake,
    contract: Arc<Contract>,
    ctx: SessionContext,
    /// The silver table as opened (registered as `s`), when it exists.
    silver: Option<deltalake::DeltaTable>,
    has_dead: bool,
    /// The superseded rows' table as opened (registered as `u`), when it exists.
    superseded: Option<deltalake::DeltaTable>,
    has_superseded: bool,
}

/// The superseded rows of some keys, with where each is: what a run that supersedes those
/// keys' stored winners moves to the new winners' partitions, by deletion vector and in one
/// commit with the other superseded rows it adds ([`Store::write_superseded`]).
pub struct SupersededInPlace {
    /// The keys, whose superseded rows leave their places.
    pub keys: Arc<super::keyset::KeySet>,
    /// Their rows (superseded schema), and where they are.
    pub rows: Vec<RecordBatch>,
    pub at: Vec<lookup::Located>,
}

impl std::fmt::Debug for SupersededInPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupersededInPlace")
            .field(
                "rows",
                &self.rows.iter().map(|b| b.num_rows()).sum::<usize>(),
            )
            .field("at", &self.at)
            .finish()
    }
}

/// Rows of some partitions, as stored.
#[derive(Debug, Default)]
pub struct Stored {
    pub silver: Vec<RecordBatch>,
    /// Superseded schema.
    pub superseded: Vec<RecordBatch>,
}

/// What a partition holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionCounts {
    pub silver: u64,
    pub dead: u64,
    /// Superseded versions whose own partition this is.
    pub superseded: u64,
    /// Dead letters by rule, largest first.
    pub by_rule: Vec<(String, u64)>,
}

fn pairs(rows: &[RecordBatch]) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for b in rows {
        let k = delta::utf8(b.column(0));
        let n = b
            .column(1)
            .as_primitive::<deltalake::arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            if k.is_valid(i) {
                out.push((k.value(i).to_string(), n.value(i) as u64));
            }
        }
    }
    out
}

/// SQL list of quoted strings.
pub fn sql_list<'a>(values: impl IntoIterator<Item = &'a String>) -> String {
    values
        .into_iter()
        .map(|v| format!("'{}'", v.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// SQL list of date literals (partition labels are `YYYY-MM-DD`), so scans prune partitions.
pub fn date_list<'a>(partitions: impl IntoIterator<Item = &'a String>) -> String {
    partitions
        .into_iter()
        .map(|p| format!("DATE '{}'", p.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The distinct strings of a query's first column.
fn strings(batches: &[RecordBatch]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for b in batches {
        let s = delta::utf8(b.column(0));
        out.extend(
            (0..s.len())
                .filter(|i| s.is_valid(*i))
                .map(|i| s.value(i).to_string()),
        );
    }
    out
}

/// The stored versions of some keys ([`version_schema`] batches), and, when they were read
/// from silver's files, their whole rows and places: one [`lookup::Found`] per batch.
pub struct Versions {
    pub batches: Vec<RecordBatch>,
    pub found: Option<Vec<lookup::Found>>,
    /// Every live file read and the rows found of the keys (None: found by a query), or
    /// nothing found as silver did not exist yet.
    pub scanned: Option<Scanned>,
}

/// Stored silver rows a merge removes: whole, by key, and where they are when known.
#[derive(Debug, Default)]
pub struct Removed {
    pub rows: Vec<RecordBatch>,
    pub keys: Vec<RecordBatch>,
    pub at: Option<Vec<lookup::Located>>,
}

/// Of `found` (one entry per batch of versions, in order), the rows `rows` (indexes into
/// those batches taken together): their whole rows, and where they are.
type Picked = (Vec<RecordBatch>, Vec<lookup::Located>);
fn pick(
    found: &[lookup::Found],
    rows: &[u32],
) -> Result<Picked, deltalake::arrow::error::ArrowError> {
    let mut rows = rows.to_vec();
    rows.sort_unstable();
    let mut taken_rows = Vec::new();
    let mut places = Vec::new();
    let mut next = rows.iter().peekable();
    let mut start = 0u32;
    for f in found {
        let end = start + f.at.rows.len() as u32;
        let mut idx = Vec::new();
        while let Some(r) = next.next_if(|r| **r < end) {
            idx.push(*r - start);
        }
        if !idx.is_empty() {
            places.push(lookup::Located {
                file: f.at.file.clone(),
                partition: f.at.partition.clone(),
                rows: idx.iter().map(|i| f.at.rows[*i as usize]).collect(),
            });
            let idx = deltalake::arrow::array::UInt32Array::from(idx);
            taken_rows.push(deltalake::arrow::compute::take_record_batch(
                &f.values, &idx,
            )?);
        }
        start = end;
    }
    if let Some(stray) = next.next() {
        // a loser the lookup did not place would stay beside its new winner
        return Err(deltalake::arrow::error::ArrowError::InvalidArgumentError(
            format!("stored version {stray} is past the {start} rows the lookup found"),
        ));
    }
    Ok((taken_rows, places))
}

/// Partitions for a message: the first few, and how many more.
fn shown_partitions(partitions: &BTreeSet<String>) -> String {
    const SHOWN: usize = 5;
    let first: Vec<&str> = partitions.iter().take(SHOWN).map(String::as_str).collect();
    match partitions.len().saturating_sub(SHOWN) {
        0 => first.join(", "),
        more => format!("{} and {more} more", first.join(", ")),
    }
}

/// The key column names of `contract`'s table.
pub(super) fn key_names(contract: &Contract) -> Vec<String> {
    contract
        .key_indexes
        .iter()
        .map(|i| contract.silver_schema.field(*i).name().clone())
        .collect()
}

impl Store {
    /// The session silver is registered in (as `s`, with its dead letters `d` and
    /// superseded rows `u` when they exist).
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Opens the tables of `contract`'s table (those that exist yet).
    pub async fn open(lake: &Lake, contract: Arc<Contract>) -> KaratResult<Store> {
        let ctx = delta::session();
        let t = &contract.table;
        let folder = layout::table(Zone::Silver, t);
        let silver = delta::open(&lake.url_of(&folder), &folder).await?;
        if let Some(table) = &silver {
            partitioned_as_contracted(table, &contract, &folder)?;
            delta::register_table(&ctx, "s", table.clone(), &folder).await?;
        }
        let has_dead = delta::register(&ctx, "d", &lake.url_of(&layout::dead_letters(t))).await?;
        let folder = layout::superseded(t);
        let superseded = delta::open(&lake.url_of(&folder), &folder).await?;
        if let Some(table) = &superseded {
            delta::register_table(&ctx, "u", table.clone(), &folder).await?;
        }
        Ok(Store {
            lake: lake.clone(),
            contract,
            ctx,
            silver,
            has_dead,
            has_superseded: superseded.is_some(),
            superseded,
        })
    }

    fn pcol(&self) -> String {
        ident(&self.contract.partition_column)
    }

    async fn query(&self, sql: &str, what: &str) -> KaratResult<Vec<RecordBatch>> {
        delta::query(
            &self.ctx,
            sql,
            &format!("{what} of silver.{}", self.contract.table),
        )
        .await
    }

    /// Partitions holding rows of `batches`, or rows they superseded (by the partition of
    /// their winner): where an earlier, perhaps interrupted, processing of them wrote.
    pub async fn partitions_of_batches(
        &self,
        batches: &BTreeSet<String>,
    ) -> KaratResult<BTreeSet<String>> {
        if batches.is_empty() {
            return Ok(BTreeSet::new());
        }
        let list = sql_list(batches);
        let pcol = self.pcol();
        let queries = [
            (
                self.silver.is_some(),
                format!(
                    "SELECT DISTINCT CAST({pcol} AS VARCHAR) FROM s WHERE _batch_id IN ({list})"
                ),
            ),
            (
                self.has_superseded,
                format!(
                    "SELECT DISTINCT {WINNER_PARTITION} FROM u WHERE _batch_id IN ({list}) OR {SUPERSEDED_BY} IN ({list})"
                ),
            ),
        ];
        self.union(&queries, "partitions of batches").await
    }

    /// Partitions whose silver rows have one of the keys of `rows` (silver schema).
    pub async fn partitions_of_keys(&self, rows: &[RecordBatch]) -> KaratResult<BTreeSet<String>> {
        let Some(on) = self.register_keys("k", rows)? else {
            return Ok(BTreeSet::new());
        };
        let q = format!(
            "SELECT DISTINCT CAST(s.{} AS VARCHAR) FROM k RIGHT SEMI JOIN s ON {on}",
            self.pcol(),
        );
        Ok(strings(&self.query(&q, "key lookup").await?))
    }

    /// The stored version of each key of `rows` (any schema starting with the silver key
    /// columns by name): its key, provenance and partition label ([`version_schema`]).
    pub async fn versions_of_keys(&self, rows: &[RecordBatch]) -> KaratResult<Vec<RecordBatch>> {
        let Some(on) = self.register_keys("k", rows)? else {
            return Ok(Vec::new());
        };
        let schema = version_schema(&self.contract)?;
        let cols: Vec<String> = schema.fields()[..schema.fields().len() - 1]
            .iter()
            .map(|f| format!("s.{}", ident(f.name())))
            .collect();
        // the partition value as it is stored: labels are written once per day, not per row
        let q = format!(
            "SELECT {}, s.{} AS {LABEL} FROM k RIGHT SEMI JOIN s ON {on}",
            cols.join(", "),
            self.pcol(),
        );
        let found = self.query(&q, "key versions").await?;
        let labelled = found
            .into_iter()
            .map(|b| {
                let mut cols = b.columns().to_vec();
                let mut fields = b.schema().fields().to_vec();
                let last = cols.len() - 1;
                cols[last] = Arc::new(super::labels::of(&cols[last])?);
                fields[last] = schema.fields()[last].clone();
                RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                KaratError::arrow(format!("key versions of {}", self.contract.table), e)
            })?;
        conform_all(labelled, &schema, &self.contract.table)
    }

    /// The stored version of each key of `rows`, as [`Store::versions_of_keys`] finds it. With
    /// deletion vectors, read from silver's files with the whole row and place of each (so
    /// that the losers are taken and deleted in place without reading any file again); a
    /// query without them, or when silver is not a plain table or its partition column is
    /// part of the key.
    pub async fn versions(&self, rows: &[RecordBatch]) -> KaratResult<Versions> {
        let c = &self.contract;
        // the files are read only to delete in place (a hash-join query is faster otherwise)
        let in_place = c.spec.deletion_vectors && !c.key_indexes.contains(&c.partition_index);
        let reading = match in_place.then(|| self.reading()).flatten() {
            Some(r) => r,
            None => {
                return Ok(Versions {
                    batches: self.versions_of_keys(rows).await?,
                    found: None,
                    scanned: self.silver.is_none().then(Scanned::default),
                });
            }
        };
        let err = |e| KaratError::arrow(format!("key versions of {}", c.table), e);
        let names = key_names(c);
        let keys = super::keyset::KeySet::new(&names, rows).map_err(err)?;
        let wanted: lookup::Wanted =
            Arc::new(move |b: &RecordBatch| deltalake::arrow::compute::not(&keys.absent(b)?));
        let files = reading.files(None).await?;
        let read = lookup::names(&files);
        let found = reading.find(files, &names, wanted, true).await?;
        let schema = version_schema(c)?;
        let batches = found
            .iter()
            .map(|f| self.version_of(&schema, f))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok(Versions {
            batches,
            scanned: Some(Scanned::of(c, read, &found)?),
            found: Some(found),
        })
    }

    /// The [`version_schema`] columns of whole rows found in one file.
    fn version_of(
        &self,
        schema: &SchemaRef,
        found: &lookup::Found,
    ) -> Result<RecordBatch, deltalake::arrow::error::ArrowError> {
        let n = found.values.num_rows();
        let fields = schema.fields();
        let mut cols = fields[..fields.len() - 1]
            .iter()
            .map(|f| {
                let at = self.contract.silver_schema.index_of(f.name())?;
                Ok(found.values.column(at).clone())
            })
            .collect::<Result<Vec<_>, deltalake::arrow::error::ArrowError>>()?;
        cols.push(Arc::new(StringArray::from(vec![
            found.at.partition.clone();
            n
        ])));
        RecordBatch::try_new(schema.clone(), cols)
    }

    /// Reading silver's files directly, when it is a plain table ([`append::table_allows`]).
    pub(super) fn reading(&self) -> Option<Arc<lookup::Reading>> {
        let c = &self.contract;
        let table = self.silver.clone()?;
        if !append::table_allows(&table, &c.silver_schema, &c.partition_column) {
            return None;
        }
        Some(Arc::new(lookup::Reading {
            table,
            schema: c.silver_schema.clone(),
            partition_by: c.partition_column.clone(),
            label: format!("silver.{}", c.table),
        }))
    }

    /// The whole stored rows of versions `rows` (indexes into `versions`' batches taken
    /// together), which hold the keys `keys` and live in `partitions`: as the lookup found
    /// them, or by a query.
    pub async fn removed(
        &self,
        versions: &Versions,
        rows: &[u32],
        keys: &RecordBatch,
        partitions: &BTreeSet<String>,
    ) -> KaratResult<Removed> {
        let Some(found) = &versions.found else {
            return Ok(Removed {
                rows: self
                    .rows_of_keys(partitions, std::slice::from_ref(keys))
                    .await?,
                keys: vec![keys.clone()],
                at: None,
            });
        };
        let (rows, at) = pick(found, rows)
            .map_err(|e| KaratError::arrow(format!("table {}", self.contract.table), e))?;
        Ok(Removed {
            rows,
            keys: vec![keys.clone()],
            at: Some(at),
        })
    }

    /// The whole silver rows of the keys of `rows` in `partitions`.
    pub async fn rows_of_keys(
        &self,
        partitions: &BTreeSet<String>,
        rows: &[RecordBatch],
    ) -> KaratResult<Vec<RecordBatch>> {
        let Some(on) = self.register_keys("r", rows)? else {
            return Ok(Vec::new());
        };
        let q = format!(
            "SELECT s.* FROM r RIGHT SEMI JOIN s ON {on} WHERE s.{} IN ({})",
            self.pcol(),
            date_list(partitions)
        );
        conform_all(
            self.query(&q, "rows of keys").await?,
            &self.contract.silver_schema,
            &self.contract.table,
        )
    }

    /// Registers the key columns of `rows` as table `name`; returns the join condition with
    /// `s`, or None when there is nothing to look up. Queries put the keys first: the hash
    /// join builds its table from its first input, and the keys are the few.
    fn register_keys(&self, name: &str, rows: &[RecordBatch]) -> KaratResult<Option<String>> {
        let c = &self.contract;
        if self.silver.is_none()
            || c.key_indexes.is_empty()
            || rows.iter().all(|b| b.num_rows() == 0)
        {
            return Ok(None);
        }
        let err = |e| KaratError::arrow(format!("key columns of {}", c.table), e);
        let key_schema: SchemaRef = Arc::new(c.silver_schema.project(&c.key_indexes).map_err(err)?);
        let projected = rows
            .iter()
            .map(|b| {
                let cols = key_schema
                    .fields()
                    .iter()
                    .map(|f| b.schema().index_of(f.name()))
                    .collect::<Result<Vec<_>, _>>()?;
                b.project(&cols)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        let table = MemTable::try_new(key_schema.clone(), vec![projected])
            .map_err(|e| KaratError::sql("key lookup", e))?;
        let _ = self.ctx.deregister_table(name);
        self.ctx
            .register_table(name, Arc::new(table))
            .map_err(|e| KaratError::sql("key lookup", e))?;
        let on: Vec<String> = key_schema
            .fields()
            .iter()
            .map(|f| format!("s.{c} = {name}.{c}", c = ident(f.name())))
            .collect();
        Ok(Some(on.join(" AND ")))
    }

    /// Silver rows per partition of `partitions`: from the Delta log (each file's record count
    /// less the rows its deletion vector deletes) when the partition column is a date or text,
    /// whose labels are the values the log stores; otherwise by a query.
    async fn silver_counts(
        &self,
        partitions: &BTreeSet<String>,
    ) -> KaratResult<Vec<(String, u64)>> {
        let Some(table) = &self.silver else {
            return Ok(Vec::new());
        };
        let c = &self.contract;
        let labelled_as_stored = matches!(
            c.silver_schema.field(c.partition_index).data_type(),
            DataType::Date32 | DataType::Utf8
        );
        let label = format!("silver.{}", c.table);
        if labelled_as_stored
            && let Some(counts) =
                stats::rows_by_partition(table, &label, &c.partition_column, partitions)?
        {
            return Ok(counts.into_iter().collect());
        }
        let pcol = self.pcol();
        // grouped by the partition value and then labelled: a cast per row formatted a date
        // per row
        let q = format!(
            "SELECT CAST(p AS VARCHAR), n FROM (SELECT {pcol} AS p, COUNT(*) AS n FROM s \
             WHERE {pcol} IN ({}) GROUP BY 1)",
            date_list(partitions)
        );
        Ok(pairs(&self.query(&q, "partition counts").await?))
    }

    /// Every row of these partitions, silver and superseded.
    pub async fn read(&self, partitions: &BTreeSet<String>) -> KaratResult<Stored> {
        let mut out = Stored::default();
        if partitions.is_empty() {
            return Ok(out);
        }
        if self.silver.is_some() {
            let q = format!(
                "SELECT * FROM s WHERE {} IN ({})",
                self.pcol(),
                date_list(partitions)
            );
            out.silver = conform_all(
                self.query(&q, "reading partitions").await?,
                &self.contract.silver_schema,
                &self.contract.table,
            )?;
        }
        out.superseded = self.superseded_of(partitions).await?;
        Ok(out)
    }

    /// The superseded rows whose winner lives in `partitions`.
    pub async fn superseded_of(
        &self,
        partitions: &BTreeSet<String>,
    ) -> KaratResult<Vec<RecordBatch>> {
        if !self.has_superseded || partitions.is_empty() {
            return Ok(Vec::new());
        }
        let q = format!(
            "SELECT * FROM u WHERE {WINNER_PARTITION} IN ({})",
            sql_list(partitions)
        );
        conform_all(
            self.query(&q, "reading superseded rows").await?,
            &self.contract.superseded_schema,
            &self.contract.table,
        )
    }

    /// The superseded rows of the keys `keys` (the key columns) in winner partitions `homes`
    /// (a key's superseded rows are where its winner is), read with their places from the
    /// table's files, to be moved in place; None unless silver deletes in place
    /// (`deletion_vectors`) and the superseded table is plain ([`append::table_allows`]).
    pub async fn superseded_of_keys(
        &self,
        keys: &RecordBatch,
        homes: &BTreeSet<String>,
    ) -> KaratResult<Option<SupersededInPlace>> {
        let c = &self.contract;
        let Some(reading) = self.superseded_reading() else {
            return Ok(None);
        };
        let names = key_names(c);
        let err = |e| KaratError::arrow(format!("superseded rows of {}", c.table), e);
        let set =
            Arc::new(super::keyset::KeySet::new(&names, std::slice::from_ref(keys)).map_err(err)?);
        let wanted: lookup::Wanted = {
            let set = set.clone();
            Arc::new(move |b: &RecordBatch| deltalake::arrow::compute::not(&set.absent(b)?))
        };
        let files = reading.files(Some(homes)).await?;
        let found = reading.find(files, &names, wanted, true).await?;
        let (rows, at) = found.into_iter().map(|f| (f.values, f.at)).unzip();
        Ok(Some(SupersededInPlace {
            keys: set,
            rows,
            at,
        }))
    }

    /// Reading the superseded table's files directly, when silver deletes in place and the
    /// table is plain.
    fn superseded_reading(&self) -> Option<Arc<lookup::Reading>> {
        let c = &self.contract;
        let table = self.superseded.clone()?;
        if !c.spec.deletion_vectors
            || !append::table_allows(&table, &c.superseded_schema, WINNER_PARTITION)
        {
            return None;
        }
        Some(Arc::new(lookup::Reading {
            table,
            schema: c.superseded_schema.clone(),
            partition_by: WINNER_PARTITION.to_string(),
            label: format!("_karat.superseded.{}", c.table),
        }))
    }

    /// Batches that contributed to these partitions: their silver rows, dead letters, or
    /// superseded versions of their keys.
    pub async fn contributors(
        &self,
        partitions: &BTreeSet<String>,
    ) -> KaratResult<BTreeSet<String>> {
        if partitions.is_empty() {
            return Ok(BTreeSet::new());
        }
        let list = sql_list(partitions);
        let pcol = self.pcol();
        let queries = [
            (
                self.silver.is_some(),
                format!(
                    "SELECT DISTINCT _batch_id FROM s WHERE {pcol} IN ({})",
                    date_list(partitions)
                ),
            ),
            (
                self.has_dead,
                format!(
                    "SELECT DISTINCT batch_id FROM d WHERE {DEAD_LETTER_PARTITION} IN ({list})"
                ),
            ),
            (
                self.has_superseded,
                format!("SELECT DISTINCT _batch_id FROM u WHERE {WINNER_PARTITION} IN ({list})"),
            ),
        ];
        self.union(&queries, "contributors").await
    }

    /// What each of `partitions` holds now: silver rows, dead letters (by rule) and superseded
    /// versions whose own partition it is.
    pub async fn counts(
        &self,
        partitions: &BTreeSet<String>,
    ) -> KaratResult<BTreeMap<String, PartitionCounts>> {
        let mut out: BTreeMap<String, PartitionCounts> = partitions
            .iter()
            .map(|p| (p.clone(), PartitionCounts::default()))
            .collect();
        if partitions.is_empty() {
            return Ok(out);
        }
        // three tables, read side by side (each query leaves a core idle much of its time)
        let (silver, superseded, dead) = futures::try_join!(
            self.silver_counts(partitions),
            self.superseded_counts(partitions),
            self.dead_counts(partitions),
        )?;
        for (p, n) in silver {
            out.entry(p).or_default().silver = n;
        }
        for (p, n) in superseded {
            out.entry(p).or_default().superseded = n;
        }
        for (p, dead) in dead {
            let c = out.entry(p).or_default();
            c.dead = dead.rows;
            c.by_rule.extend(dead.by_rule);
        }
        for c in out.values_mut() {
            c.by_rule.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        }
        Ok(out)
    }

    /// Superseded versions per own partition among `partitions`.
    async fn superseded_counts(
        &self,
        partitions: &BTreeSet<String>,
    ) -> KaratResult<Vec<(String, u64)>> {
        if !self.has_superseded {
            return Ok(Vec::new());
        }
        // compared as dates rather than as a text cast per row (the table is partitioned by
        // the winner's partition, so this is a scan; file statistics may prune it)
        let q = format!(
            "SELECT CAST(p AS VARCHAR), n FROM (SELECT {pcol} AS p, COUNT(*) AS n FROM u \
             WHERE {pcol} IN ({}) GROUP BY 1)",
            date_list(partitions),
            pcol = self.pcol(),
        );
        Ok(pairs(&self.query(&q, "superseded counts").await?))
    }

    /// Dead letters per partition among `partitions`, by rule.
    async fn dead_counts(
        &self,
        partitions: &BTreeSet<String>,
    ) -> KaratResult<BTreeMap<String, DeadCounts>> {
        let mut dead = BTreeMap::new();
        if !self.has_dead {
            return Ok(dead);
        }
        let q = format!(
            "SELECT {DEAD_LETTER_PARTITION}, rules FROM d \
             WHERE {DEAD_LETTER_PARTITION} IN ({})",
            sql_list(partitions)
        );
        let what = format!("dead letters by rule of silver.{}", self.contract.table);
        let mut rows = delta::query_stream(&self.ctx, &q, &what).await?;
        while let Some(b) = rows.next().await {
            count_dead_letters(&mut dead, &b.map_err(|e| KaratError::sql(what.clone(), e))?);
        }
        Ok(dead)
    }

    /// Every partition the table has rows or dead letters in.
    pub async fn partitions(&self) -> KaratResult<BTreeSet<String>> {
        let queries = [
            (
                self.silver.is_some(),
                format!("SELECT DISTINCT CAST({} AS VARCHAR) FROM s", self.pcol()),
            ),
            (
                self.has_dead,
                format!("SELECT DISTINCT {DEAD_LETTER_PARTITION} FROM d"),
            ),
        ];
        self.union(&queries, "partitions").await
    }

    /// The union of the first column of `queries`, each run only when its table exists.
    async fn union(&self, queries: &[(bool, String)], what: &str) -> KaratResult<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for (_, q) in queries.iter().filter(|(present, _)| *present) {
            out.extend(strings(&self.query(q, what).await?));
        }
        Ok(out)
    }

    /// Writes silver rows: appended, or replacing exactly `partitions`. Returns the version.
    pub async fn write_silver(
        &self,
        rows: Vec<RecordBatch>,
        replace: Option<&BTreeSet<String>>,
        meta: Vec<(String, serde_json::Value)>,
    ) -> KaratResult<i64> {
        let c = &self.contract;
        delta::write(
            &self.lake.url_of(&layout::table(Zone::Silver, &c.table)),
            &format!("silver.{}", c.table),
            c.silver_schema.clone(),
            rows,
            Some(&c.partition_column),
            self.replace(&c.partition_column, replace),
            meta,
        )
        .await
    }

    /// Replaces `partitions` of silver with their stored rows but those of `removed` keys, plus
    /// `added` rows, in one commit. With the table's `deletion_vectors`, the stored rows of
    /// those keys are deleted by deletion vector (where `removed` says they are, or found by
    /// reading each file's key columns; a file keeps its other rows as they are) and the added
    /// rows appended; without, the partitions are streamed from the stored table into new
    /// files (memory does not grow with the partitions' size).
    pub async fn rewrite_silver(
        &self,
        partitions: &BTreeSet<String>,
        removed: Removed,
        added: Vec<RecordBatch>,
        meta: Vec<(String, serde_json::Value)>,
        events: &Events,
    ) -> KaratResult<i64> {
        let c = &self.contract;
        let label = format!("silver.{}", c.table);
        let url = self.lake.url_of(&layout::table(Zone::Silver, &c.table));
        match delta::open(&url, &label).await? {
            Some(table) if append::table_allows(&table, &c.silver_schema, &c.partition_column) => {
                let rewrite = self.partition_rewrite(partitions, removed, added)?;
                self.rewrite_plain(table, &label, rewrite, meta).await
            }
            _ => {
                if c.spec.deletion_vectors {
                    events.note(format!(
                        "silver {}: deletion_vectors is on, but the stored table is not plain \
                         (its schema, partitioning or protocol differs from the contract's): \
                         partitions {} were rewritten whole instead",
                        c.table,
                        shown_partitions(partitions)
                    ));
                }
                self.rewrite_by_query(partitions, removed, added, meta)
                    .await
            }
        }
    }

    /// [`Store::rewrite_silver`] of a plain table: by deletion vectors with the table's
    /// `deletion_vectors`, else partition by partition (copy-on-write).
    async fn rewrite_plain(
        &self,
        table: deltalake::DeltaTable,
        label: &str,
        rewrite: rewrite::Rewrite,
        meta: Vec<(String, serde_json::Value)>,
    ) -> KaratResult<i64> {
        let c = &self.contract;
        let (schema, pcol) = (&c.silver_schema, &c.partition_column);
        if !c.spec.deletion_vectors {
            return rewrite::replace_partitions(table, label, schema, pcol, rewrite, meta).await;
        }
        let table = deletion::enable(table, label, meta.clone()).await?;
        let keys = key_names(c);
        deletion::delete_and_append(table, label, schema, pcol, rewrite, &keys, meta).await
    }

    /// [`Store::rewrite_silver`] of any other table: the partitions' stored rows but those of
    /// `removed` keys, plus `added`, as one query written by delta-rs's replace-where.
    async fn rewrite_by_query(
        &self,
        partitions: &BTreeSet<String>,
        removed: Removed,
        added: Vec<RecordBatch>,
        meta: Vec<(String, serde_json::Value)>,
    ) -> KaratResult<i64> {
        let c = &self.contract;
        let label = format!("silver.{}", c.table);
        let err = |e| KaratError::sql(format!("rewriting {label}"), e);
        let values: Vec<String> = partitions.iter().cloned().collect();
        let pdt = c.silver_schema.field(c.partition_index).data_type();
        let in_parts = delta::in_list(&c.partition_column, &values, pdt).map_err(err)?;
        let mut kept = self
            .ctx
            .table("s")
            .await
            .map_err(err)?
            .filter(in_parts)
            .map_err(err)?;
        let removed: Vec<RecordBatch> = removed
            .keys
            .into_iter()
            .filter(|b| b.num_rows() > 0)
            .collect();
        if !removed.is_empty() {
            let keys: Vec<&str> = c
                .key_indexes
                .iter()
                .map(|i| c.silver_schema.field(*i).name().as_str())
                .collect();
            let aliased: Vec<Expr> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| column(k).alias(format!("__karat_key{i}")))
                .collect();
            let gone = self
                .ctx
                .read_batches(removed)
                .map_err(err)?
                .select(aliased)
                .map_err(err)?;
            let on: Vec<Expr> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| column(k).eq(column(&format!("__karat_key{i}"))))
                .collect();
            // the removed keys first: the hash join builds its table from its first input,
            // and the stored rows stream past it
            kept = gone.join_on(kept, JoinType::RightAnti, on).map_err(err)?;
        }
        // a column the contract gained after the stored rows were written is null in them
        let as_silver = |df: DataFrame| {
            let have = df.schema().clone();
            df.select(
                c.silver_schema
                    .fields()
                    .iter()
                    .map(|f| {
                        let value = if have.has_column_with_unqualified_name(f.name()) {
                            column(f.name())
                        } else {
                            lit(ScalarValue::Null)
                        };
                        cast(value, f.data_type().clone()).alias(f.name())
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let mut all = as_silver(kept).map_err(err)?;
        let added: Vec<RecordBatch> = added.into_iter().filter(|b| b.num_rows() > 0).collect();
        if !added.is_empty() {
            let new = as_silver(self.ctx.read_batches(added).map_err(err)?).map_err(err)?;
            all = all.union(new).map_err(err)?;
        }
        delta::write_plan(
            &self.lake.url_of(&layout::table(Zone::Silver, &c.table)),
            &label,
            c.silver_schema.clone(),
            all.into_unoptimized_plan(),
            Some(&c.partition_column),
            self.replace(&c.partition_column, Some(partitions)),
            meta,
        )
        .await
    }

    /// [`Store::rewrite_silver`] as a partition-by-partition rewrite: the stored rows of keys
    /// other than `removed`'s, and `added` by partition.
    fn partition_rewrite(
        &self,
        partitions: &BTreeSet<String>,
        removed: Removed,
        added: Vec<RecordBatch>,
    ) -> KaratResult<rewrite::Rewrite> {
        let c = &self.contract;
        let err = |e| KaratError::arrow(format!("rewriting silver.{}", c.table), e);
        let keys: Vec<RecordBatch> = removed
            .keys
            .into_iter()
            .filter(|b| b.num_rows() > 0)
            .collect();
        let gone = super::keyset::KeySet::new(&key_names(c), &keys).map_err(err)?;
        let label = format!("silver.{}", c.table);
        let by_partition = split_by_label(&added, &label, &c.partition_column, |b| {
            Ok(Arc::new(super::labels::of(b.column(c.partition_index))?))
        })?;
        Ok(rewrite::Rewrite {
            partitions: partitions.clone(),
            keep: Arc::new(move |b: &RecordBatch| gone.absent(b)),
            added: by_partition,
            found: removed.at,
        })
    }

    /// Writes superseded rows: appended, or replacing exactly `partitions` (by winner).
    pub async fn write_superseded(
        &self,
        rows: Vec<RecordBatch>,
        replace: Option<&BTreeSet<String>>,
        in_place: Option<SupersededInPlace>,
        meta: Vec<(String, serde_json::Value)>,
    ) -> KaratResult<i64> {
        let c = &self.contract;
        if let (Some(moved), Some(partitions), Some(table)) =
            (in_place, replace, self.superseded.clone())
        {
            let label = format!("_karat.superseded.{}", c.table);
            let added = split_by_label(&rows, &label, WINNER_PARTITION, |b| {
                Ok(b.column_by_name(WINNER_PARTITION)
                    .cloned()
                    .expect("winner partition"))
            })?;
            let keys = moved.keys;
            let rewrite = rewrite::Rewrite {
                partitions: partitions.clone(),
                keep: Arc::new(move |b: &RecordBatch| keys.absent(b)),
                added,
                found: Some(moved.at),
            };
            let table = deletion::enable(table, &label, meta.clone()).await?;
            let schema = &c.superseded_schema;
            return deletion::delete_and_append(
                table,
                &label,
                schema,
                WINNER_PARTITION,
                rewrite,
                &key_names(c),
                meta,
            )
            .await;
        }
        delta::write(
            &self.lake.url_of(&layout::superseded(&c.table)),
            &format!("_karat.superseded.{}", c.table),
            c.superseded_schema.clone(),
            rows,
            Some(WINNER_PARTITION),
            self.replace(WINNER_PARTITION, replace),
            meta,
        )
        .await
    }

    /// Replaces the dead letters of `batches` with `rows`.
    pub async fn write_dead(
        &self,
        rows: Vec<RecordBatch>,
        batches: &BTreeSet<String>,
        meta: Vec<(String, serde_json::Value)>,
    ) -> KaratResult<i64> {
        let (url, label) = self.dead_letters_table();
        delta::write(
            &url,
            &label,
            dead_letter_schema(),
            rows,
            Some(DEAD_LETTER_PARTITION),
            Replace::Matching {
                column: "batch_id".into(),
                values: batches.iter().cloned().collect(),
            },
            meta,
        )
        .await
    }

    /// Compacts the dead letters' crowded partitions ([`compact::crowded_partitions`]); the
    /// version of its commit, if it made one.
    pub async fn compact_dead(&self) -> KaratResult<Option<i64>> {
        let (url, label) = self.dead_letters_table();
        let meta = vec![("karat.operation".to_string(), serde_json::json!("compact"))];
        compact::crowded_partitions(&url, &label, meta).await
    }

    /// The dead-letter table's address and its label in errors.
    fn dead_letters_table(&self) -> (url::Url, String) {
        let table = &self.contract.table;
        let url = self.lake.url_of(&layout::dead_letters(table));
        (url, format!("dead_letters.{table}"))
    }

    fn replace(&self, column: &str, partitions: Option<&BTreeSet<String>>) -> Replace {
        match partitions {
            None => Replace::Append,
            Some(ps) => Replace::Matching {
                column: column.to_string(),
                values: ps.iter().cloned().collect(),
            },
        }
    }
}

/// Refuses a silver table stored partitioned otherwise than its contract now says (its
/// `partition_by` edited), or with a column of another type ([`same_types_as_contracted`]),
/// before anything is written: its partitions cannot be replaced by the contract's, and a run
/// went as far as writing the superseded rows, silver failing after.
fn partitioned_as_contracted(
    table: &deltalake::DeltaTable,
    contract: &Contract,
    folder: &str,
) -> KaratResult<()> {
    let state = table.snapshot().map_err(|e| KaratError::delta(folder, e))?;
    let snapshot = state.snapshot();
    same_types_as_contracted(&snapshot.arrow_schema(), contract)?;
    let stored = snapshot.metadata().partition_columns();
    if stored == [contract.partition_column.clone()].as_slice() {
        return Ok(());
    }
    Err(KaratError::Other(format!(
        "silver table {}: stored partitioned by {}, but its contract now partitions by {}; a \
         table is not repartitioned in place: put partition_by back, or build a lake under the \
         new contract with `karat rebuild --into DIR` and move to it",
        contract.table,
        stored.join(", "),
        contract.partition_column
    )))
}

/// Refuses a silver table holding a column under another type than its contract now says (the
/// column's `type` edited), before anything is written: rows written under the new type were
/// cast to the stored one (1.5 stored as 1 when int64 became a decimal), or failed every run.
fn same_types_as_contracted(stored: &Schema, contract: &Contract) -> KaratResult<()> {
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    for field in contract.silver_schema.fields() {
        let Ok(kept) = stored.field_with_name(field.name()) else {
            continue;
        };
        let (was, is) = (kept.data_type(), field.data_type());
        if was == is || (text(was) && text(is)) {
            continue;
        }
        return Err(KaratError::Other(format!(
            "silver table {}: column {} is stored as {was}, but its contract now says {is}; a \
             column's type is not changed in place: put its type back, or build a lake under \
             the new contract with `karat rebuild --into DIR` and move to it",
            contract.table,
            field.name()
        )));
    }
    Ok(())
}

/// A column by its exact name (no parsing of dots or case).
fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// Partition label column of [`version_schema`] batches.
pub const LABEL: &str = "_karat_label";

/// Dead letters of one partition: how many, and how many broke each rule.
#[derive(Debug, Default, PartialEq, Eq)]
struct DeadCounts {
    rows: u64,
    by_rule: BTreeMap<String, u64>,
}

/// Counts dead letters by partition and rule into `out` from a batch of (partition, rules)
/// rows: one pass over the rows, as they stream, where a query unnesting the rules and
/// grouping by both took ten times longer than reading them (measured on the 30-day bench).
fn count_dead_letters(out: &mut BTreeMap<String, DeadCounts>, b: &RecordBatch) {
    if b.num_rows() == 0 {
        return;
    }
    let partitions = delta::utf8(b.column(0));
    let rules = delta::utf8_list(b.column(1));
    let names = rules.values().as_string::<i32>();
    let offsets = rules.value_offsets();
    for i in 0..b.num_rows() {
        let c = out.entry(partitions.value(i).to_string()).or_default();
        c.rows += 1;
        if rules.is_null(i) {
            continue;
        }
        let listed = offsets[i] as usize..offsets[i + 1] as usize;
        for r in listed.filter(|r| names.is_valid(*r)) {
            *c.by_rule.entry(names.value(r).to_string()).or_default() += 1;
        }
    }
}

/// Key columns, the provenance that orders versions, and the partition label.
pub fn version_schema(contract: &Contract) -> KaratResult<SchemaRef> {
    let schema = &contract.silver_schema;
    let mut cols = contract.key_indexes.clone();
    for name in ["_ingested_at", "_batch_id", "_line"] {
        cols.push(
            schema
                .index_of(name)
                .map_err(|e| KaratError::arrow(format!("table {}", contract.table), e))?,
        );
    }
    let mut fields: Vec<deltalake::arrow::datatypes::Field> =
        cols.iter().map(|i| schema.field(*i).clone()).collect();
    fields.push(deltalake::arrow::datatypes::Field::new(
        LABEL,
        deltalake::arrow::datatypes::DataType::Utf8,
        true,
    ));
    Ok(Arc::new(Schema::new(fields)))
}

/// Stored rows cast onto `schema` (of `table`'s silver or superseded rows). A nullable column
/// the stored table lacks is null in them: the contract gained it after they were written (as a
/// Delta scan of the table reads them once a write has added the column); a missing column that
/// may not be null is an error naming the table and the column.
fn conform_all(
    batches: Vec<RecordBatch>,
    schema: &Arc<Schema>,
    table: &str,
) -> KaratResult<Vec<RecordBatch>> {
    batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| conform_widened(b, schema, table))
        .collect()
}

fn conform_widened(b: &RecordBatch, schema: &Arc<Schema>, table: &str) -> KaratResult<RecordBatch> {
    let err = |e| KaratError::arrow(format!("reading stored rows of silver table {table}"), e);
    let mut cols = b.columns().to_vec();
    let mut fields = b.schema().fields().to_vec();
    for f in schema.fields() {
        if b.column_by_name(f.name()).is_some() {
            continue;
        }
        if !f.is_nullable() {
            return Err(KaratError::Other(format!(
                "silver table {table}: its stored rows have no column {}, which the contract \
                 says may not be null; make it nullable, or rebuild the table under the new \
                 contract (karat rebuild --into DIR)",
                f.name()
            )));
        }
        cols.push(deltalake::arrow::array::new_null_array(
            f.data_type(),
            b.num_rows(),
        ));
        fields.push(f.clone());
    }
    let widened = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(err)?;
    delta::conform(&widened, schema).map_err(err)
}

/// `rows` split by partition, by the label `label_of` gives each row (a text column); an
/// error naming the table (`label`) and its partition column `column` when a row has none
/// (validation requires the partition value: a row without one is a bug, not a drop).
fn split_by_label(
    rows: &[RecordBatch],
    label: &str,
    column: &str,
    label_of: impl Fn(
        &RecordBatch,
    )
        -> Result<deltalake::arrow::array::ArrayRef, deltalake::arrow::error::ArrowError>,
) -> KaratResult<BTreeMap<String, Vec<RecordBatch>>> {
    let err = |e| KaratError::arrow(format!("rewriting {label}"), e);
    let mut by_partition: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
    let mut unplaced = 0;
    for b in rows.iter().filter(|b| b.num_rows() > 0) {
        let labels = label_of(b).map_err(err)?;
        let labels = delta::utf8(&labels);
        let distinct: BTreeSet<&str> = labels.iter().flatten().collect();
        unplaced += labels.null_count();
        for value in distinct {
            let mask = deltalake::arrow::compute::kernels::cmp::eq(
                &labels,
                &StringArray::new_scalar(value),
            )
            .map_err(err)?;
            let rows = deltalake::arrow::compute::filter_record_batch(b, &mask).map_err(err)?;
            by_partition
                .entry(value.to_string())
                .or_default()
                .push(rows);
        }
    }
    if unplaced > 0 {
        return Err(KaratError::Other(format!(
            "rewriting {label}: {unplaced} new row(s) have no {column} value"
        )));
    }
    Ok(by_partition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{ListBuilder, StringBuilder};
    use deltalake::arrow::datatypes::Field;

    #[test]
    fn dead_letters_are_counted_by_partition_and_by_each_rule_they_broke() {
        let partitions = StringArray::from(vec!["d1", "d1", "d2", "d2"]);
        let mut rules = ListBuilder::new(StringBuilder::new());
        for row in [
            vec![Some("a"), Some("b")],
            vec![Some("a")],
            vec![None],
            vec![],
        ] {
            for r in row {
                rules.values().append_option(r);
            }
            rules.append(true);
        }
        let rules = rules.finish();
        let schema = Arc::new(Schema::new(vec![
            Field::new("partition", DataType::Utf8, true),
            Field::new("rules", rules.data_type().clone(), true),
        ]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(partitions), Arc::new(rules)]).unwrap();
        let mut counts = BTreeMap::new();
        count_dead_letters(&mut counts, &b);
        let d1 = &counts["d1"];
        assert_eq!(d1.rows, 2);
        assert_eq!(
            d1.by_rule,
            BTreeMap::from([("a".into(), 2), ("b".into(), 1)])
        );
        assert_eq!(
            counts["d2"],
            DeadCounts {
                rows: 2,
                by_rule: BTreeMap::new()
            }
        );
    }
}
