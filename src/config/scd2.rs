//! `kind = "scd2"` gold tables: a Slowly Changing Dimension Type 2 over a silver table, defined
//! as the query that derives it. Every version of a key ever accepted — the silver row and its
//! superseded versions — ordered by `effective_from` (then ingestion, batch and line); a version
//! whose tracked columns equal the one before it adds nothing; each kept version is valid from
//! its `effective_from` to the next one's (`valid_to` null and `is_current` true for the last),
//! with a hash of the tracked columns. Being a pure function of silver, it is recomputed (one
//! Delta commit) whenever silver changes, so late and out-of-order changes land in order and
//! replays re-derive it.

/// Provenance columns every silver row carries (named here: config sits below silver).
const INGESTED_AT: &str = "_ingested_at";
const LINE: &str = "_line";

/// A resolved SCD2 definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Scd2 {
    /// The silver table it derives from.
    pub from: String,
    pub key: Vec<String>,
    /// Columns whose change opens a new version.
    pub track: Vec<String>,
    /// The column a version takes effect at (`_ingested_at` by default).
    pub effective_from: String,
}

/// The name the superseded versions of `from` are registered under while the query runs.
pub fn history_table(from: &str) -> String {
    format!("__karat_superseded_{from}")
}

fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Scd2 {
    /// The query over silver alone (`with_history` false: before any version was superseded),
    /// or over silver and its superseded versions.
    pub fn sql(&self, with_history: bool) -> String {
        let key = self.key.iter().map(|k| q(k)).collect::<Vec<_>>().join(", ");
        let track = self.track.iter().map(|c| q(c)).collect::<Vec<_>>();
        let mut cols = self.key.iter().map(|k| q(k)).collect::<Vec<_>>();
        cols.extend(track.iter().cloned());
        let cols = cols.join(", ");
        let version = format!(
            "SELECT {cols}, {eff} AS valid_from, {ing} AS __ingested, _batch_id AS __batch, {line} AS __line FROM {{}}",
            eff = q(&self.effective_from),
            ing = q(INGESTED_AT),
            line = q(LINE),
        );
        let mut versions = version.replace("{}", &q(&self.from));
        if with_history {
            versions.push_str(" UNION ALL ");
            versions.push_str(&version.replace("{}", &q(&history_table(&self.from))));
        }
        let hashed: Vec<String> = track
            .iter()
            .map(|c| format!("COALESCE(CAST({c} AS VARCHAR), '\u{2205}')"))
            .collect();
        let order = format!("PARTITION BY {key} ORDER BY valid_from, __ingested, __batch, __line");
        format!(
            "WITH v AS ({versions}), \
             h AS (SELECT *, md5(concat_ws('\u{1f}', {hash})) AS row_hash FROM v), \
             o AS (SELECT *, LAG(row_hash) OVER ({order}) AS __previous FROM h), \
             c AS (SELECT * FROM o WHERE __previous IS NULL OR __previous <> row_hash) \
             SELECT {cols}, valid_from, LEAD(valid_from) OVER ({order}) AS valid_to, \
             LEAD(valid_from) OVER ({order}) IS NULL AS is_current, row_hash FROM c",
            hash = hashed.join(", "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_reads_history_only_when_asked() {
        let s = Scd2 {
            from: "customers".into(),
            key: vec!["customer_id".into()],
            track: vec!["tier".into()],
            effective_from: "_ingested_at".into(),
        };
        assert!(!s.sql(false).contains("__karat_superseded_customers"));
        assert!(s.sql(true).contains("UNION ALL"));
        assert!(
            s.sql(true)
                .contains("FROM \"__karat_superseded_customers\"")
        );
    }
}
