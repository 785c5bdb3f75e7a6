//! Catalogs for people: import from CSV and JSON, export to both.
//!
//! CSV has the header `id,size,weight,name`; JSON is an array of
//! `{"id": ..., "size": ..., "weight": ..., "name": ...}` objects. Errors name the line.

use std::collections::HashMap;
use std::io::{Read, Write};

use anyhow::{Context, Result, bail};
use fill_core::ContentId;
use fill_core::catalog::{Catalog, CatalogBuilder, Entry};

/// A CSV reader whose header line is exactly `expected` (spaces around names allowed).
fn csv_with_header<R: Read>(input: R, what: &str, expected: &[&str]) -> Result<csv::Reader<R>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(input);
    let headers = rdr
        .headers()
        .context("line 1: cannot read the CSV header")?;
    if headers.iter().map(str::trim).ne(expected.iter().copied()) {
        bail!(
            "line 1: {what} header must be `{}`, found `{}`",
            expected.join(","),
            headers.iter().collect::<Vec<_>>().join(",")
        );
    }
    Ok(rdr)
}

/// Reads CSV with the header `id,size,weight,name` into a builder.
pub fn read_csv(input: impl Read) -> Result<CatalogBuilder> {
    let mut rdr = csv_with_header(input, "CSV", &["id", "size", "weight", "name"])?;
    let mut b = CatalogBuilder::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line = rdr.position().line();
        let more = rdr
            .read_record(&mut record)
            .with_context(|| format!("line {line}: malformed CSV"))?;
        if !more {
            break;
        }
        let line = record.position().map_or(line, |p| p.line());
        if record.len() != 4 {
            bail!(
                "line {line}: expected 4 fields (id,size,weight,name), found {}",
                record.len()
            );
        }
        let id =
            ContentId::parse(record[0].trim()).with_context(|| format!("line {line}: bad id"))?;
        let size: u64 = record[1].trim().parse().with_context(|| {
            format!(
                "line {line}: bad size {:?}: expected bytes as a whole number",
                &record[1]
            )
        })?;
        let weight: f64 = record[2].trim().parse().with_context(|| {
            format!(
                "line {line}: bad weight {:?}: expected a number",
                &record[2]
            )
        })?;
        b.push(id, size, weight, &record[3])
            .map_err(|e| anyhow::anyhow!("line {line}: {}", strip_entry(&e.to_string())))?;
    }
    Ok(b)
}

/// Reads a JSON array of entries into a builder.
pub fn read_json(input: impl Read) -> Result<CatalogBuilder> {
    let entries: Vec<Entry> = serde_json::from_reader(std::io::BufReader::new(input))
        .context("bad JSON catalog: expected an array of {id, size, weight, name} objects")?;
    let mut b = CatalogBuilder::with_capacity(entries.len(), 0);
    for (i, e) in entries.iter().enumerate() {
        b.push(e.id, e.size, e.weight, &e.name)
            .map_err(|err| anyhow::anyhow!("entry {i}: {}", strip_entry(&err.to_string())))?;
    }
    Ok(b)
}

/// The builder numbers entries itself; the caller knows the line.
fn strip_entry(msg: &str) -> &str {
    match msg.split_once(": ") {
        Some((head, rest)) if head.starts_with("entry ") => rest,
        _ => msg,
    }
}

/// Reads a popularity CSV (`name,weight`) into a map.
pub fn read_popularity(input: impl Read) -> Result<HashMap<String, f64>> {
    let mut rdr = csv_with_header(input, "popularity CSV", &["name", "weight"])?;
    let mut out = HashMap::new();
    for rec in rdr.records() {
        let rec = rec.context("malformed popularity CSV")?;
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() != 2 {
            bail!(
                "line {line}: expected 2 fields (name,weight), found {}",
                rec.len()
            );
        }
        let weight: f64 = rec[1]
            .trim()
            .parse()
            .with_context(|| format!("line {line}: bad weight {:?}", &rec[1]))?;
        if out.insert(rec[0].to_owned(), weight).is_some() {
            bail!("line {line}: name {:?} appears twice", &rec[0]);
        }
    }
    Ok(out)
}

/// Writes a catalog as CSV, in id order.
pub fn write_csv(cat: &Catalog<'_>, out: impl Write) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["id", "size", "weight", "name"])?;
    for i in 0..cat.len() {
        let (id, size, weight) = (
            cat.id(i).to_hex(),
            cat.size(i).to_string(),
            cat.weight(i).to_string(),
        );
        w.write_record([id.as_str(), &size, &weight, cat.name(i)])?;
    }
    w.flush()?;
    Ok(())
}

/// Writes a catalog as a JSON array, in id order.
pub fn write_json(cat: &Catalog<'_>, mut out: impl Write) -> Result<()> {
    out.write_all(b"[")?;
    for i in 0..cat.len() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(b"\n  ")?;
        serde_json::to_writer(&mut out, &cat.entry(i))?;
    }
    out.write_all(if cat.is_empty() { b"]\n" } else { b"\n]\n" })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> String {
        ContentId::of(&[n]).to_string()
    }

    fn csv_err(text: &str) -> String {
        format!(
            "{:#}",
            read_csv(text.as_bytes())
                .and_then(|b| Ok(b.finish()?))
                .unwrap_err()
        )
    }

    #[test]
    fn csv_round_trip() {
        let text = format!(
            "id,size,weight,name\n{},10,2.5,\"a, with comma\"\n{},0,0,b/c.mp4\n",
            id(1),
            id(2)
        );
        let bytes = read_csv(text.as_bytes()).unwrap().finish().unwrap();
        let cat = Catalog::parse(&bytes).unwrap();
        let mut out = Vec::new();
        write_csv(&cat, &mut out).unwrap();
        let again = read_csv(&out[..]).unwrap().finish().unwrap();
        assert_eq!(bytes, again);
        let mut json = Vec::new();
        write_json(&cat, &mut json).unwrap();
        assert_eq!(read_json(&json[..]).unwrap().finish().unwrap(), bytes);
    }

    #[test]
    fn csv_errors_name_the_line() {
        assert_eq!(
            csv_err("name,size\n"),
            "line 1: CSV header must be `id,size,weight,name`, found `name,size`"
        );
        assert_eq!(
            csv_err(&format!("id,size,weight,name\n{},1,1,a\nzz,1,1,b\n", id(1))),
            "line 3: bad id: content id must be 64 lowercase hex characters, got 2 characters"
        );
        assert_eq!(
            csv_err(&format!("id,size,weight,name\n{},-1,1,a\n", id(1))),
            "line 2: bad size \"-1\": expected bytes as a whole number: invalid digit found in string"
        );
        assert_eq!(
            csv_err(&format!("id,size,weight,name\n{},1,NaN,a\n", id(1))),
            "line 2: weight NaN is not a finite number >= 0"
        );
        assert_eq!(
            csv_err(&format!(
                "id,size,weight,name\n{},1,1,../etc/passwd\n",
                id(1)
            )),
            "line 2: bad name: name contains a '..' component"
        );
        assert_eq!(
            csv_err(&format!("id,size,weight,name\n{},1,1\n", id(1))),
            "line 2: malformed CSV: CSV error: record 1 (line: 2, byte: 20): found record with 3 fields, but the previous record has 4 fields"
        );
        assert_eq!(
            csv_err(&format!(
                "id,size,weight,name\n{i},1,1,a\n{i},1,1,b\n",
                i = id(1)
            )),
            format!("entry 1: duplicate id {}", id(1))
        );
        assert_eq!(
            csv_err(&format!(
                "id,size,weight,name\n{},18446744073709551615,1,a\n{},1,1,b\n",
                id(1),
                id(2)
            )),
            "entry 1: sizes overflow: the total passes 2^64-1 bytes"
        );
    }

    #[test]
    fn json_errors() {
        let msg = |t: &str| format!("{:#}", read_json(t.as_bytes()).unwrap_err());
        assert!(msg("{}").starts_with("bad JSON catalog: expected an array"));
        assert!(
            msg(r#"[{"id":"zz","size":1,"weight":1,"name":"a"}]"#)
                .contains("content id must be 64 lowercase hex characters")
        );
        assert_eq!(
            msg(&format!(
                r#"[{{"id":"{}","size":1,"weight":1,"name":"a\u0000b"}}]"#,
                id(1)
            )),
            "entry 0: bad name: name contains a NUL byte"
        );
    }

    #[test]
    fn popularity() {
        let p = read_popularity("name,weight\na,1.5\nb,2\n".as_bytes()).unwrap();
        assert_eq!(p["a"], 1.5);
        let e = read_popularity("name,weight\na,1\na,2\n".as_bytes()).unwrap_err();
        assert_eq!(format!("{e:#}"), "line 3: name \"a\" appears twice");
        let e = read_popularity("id,weight\n".as_bytes()).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "line 1: popularity CSV header must be `name,weight`, found `id,weight`"
        );
    }
}
