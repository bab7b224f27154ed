//! Names the scanner knows: built-in functions (a call to anything else may be a stored
//! function that writes, so it goes to the primary) and keywords that may precede `(`.
//! Both lists are sorted (a test checks) and searched by binary search: no allocation.

/// True for MySQL/MariaDB built-in functions (uppercase input). Missing one only costs a read
/// sent to the primary, counted as `stored_function`.
pub(super) fn is_builtin(upper_name: &[u8]) -> bool {
    BUILTINS.binary_search(&upper_name).is_ok()
}

/// True for keywords that can be followed by `(` in a query without being a function call.
pub(super) fn is_keyword_before_paren(upper_name: &[u8]) -> bool {
    KEYWORDS.binary_search(&upper_name).is_ok()
}

const BUILTINS: &[&[u8]] = &[
    b"ABS", b"ACOS", b"ADDDATE", b"ADDTIME", b"ADD_MONTHS", b"AES_DECRYPT", b"AES_ENCRYPT",
    b"ANY_VALUE", b"ASCII", b"ASIN", b"ATAN", b"ATAN2", b"AVG", b"BENCHMARK", b"BIN", b"BINARY",
    b"BINLOG_GTID_POS", b"BIN_TO_UUID", b"BIT_AND", b"BIT_COUNT", b"BIT_LENGTH", b"BIT_OR",
    b"BIT_XOR", b"CAST", b"CEIL", b"CEILING", b"CHAR", b"CHARACTER_LENGTH", b"CHARSET",
    b"CHAR_LENGTH", b"CHR", b"COALESCE", b"COERCIBILITY", b"COLLATION", b"COLUMN_ADD",
    b"COLUMN_CHECK", b"COLUMN_CREATE", b"COLUMN_DELETE", b"COLUMN_EXISTS", b"COLUMN_GET",
    b"COLUMN_JSON", b"COLUMN_LIST", b"COMPRESS", b"CONCAT", b"CONCAT_WS", b"CONNECTION_ID",
    b"CONV", b"CONVERT", b"CONVERT_TZ", b"COS", b"COT", b"COUNT", b"CRC32", b"CRC32C",
    b"CUME_DIST", b"CURDATE", b"CURRENT_DATE", b"CURRENT_ROLE", b"CURRENT_TIME",
    b"CURRENT_TIMESTAMP", b"CURRENT_USER", b"CURTIME", b"DATABASE", b"DATE", b"DATEDIFF",
    b"DATE_ADD", b"DATE_FORMAT", b"DATE_SUB", b"DAY", b"DAYNAME", b"DAYOFMONTH", b"DAYOFWEEK",
    b"DAYOFYEAR", b"DECODE", b"DECODE_HISTOGRAM", b"DECODE_ORACLE", b"DEFAULT", b"DEGREES",
    b"DENSE_RANK", b"DES_DECRYPT", b"DES_ENCRYPT", b"ELT", b"ENCODE", b"ENCRYPT", b"EXP",
    b"EXPORT_SET", b"EXTRACT", b"EXTRACTVALUE", b"FIELD", b"FIND_IN_SET", b"FIRST_VALUE",
    b"FLOOR", b"FORMAT", b"FORMAT_BYTES", b"FORMAT_PICO_TIME", b"FOUND_ROWS", b"FROM_BASE64",
    b"FROM_DAYS", b"FROM_UNIXTIME", b"GEOMCOLLECTION", b"GEOMETRYCOLLECTION", b"GET_FORMAT",
    b"GET_LOCK", b"GREATEST", b"GROUPING", b"GROUP_CONCAT", b"GTID_SUBSET", b"GTID_SUBTRACT",
    b"HEX", b"HOUR", b"ICU_VERSION", b"IF", b"IFNULL", b"INET6_ATON", b"INET6_NTOA", b"INET_ATON",
    b"INET_NTOA", b"INSERT", b"INSTR", b"INTERVAL", b"ISNULL", b"IS_FREE_LOCK", b"IS_IPV4",
    b"IS_IPV4_COMPAT", b"IS_IPV4_MAPPED", b"IS_IPV6", b"IS_USED_LOCK", b"IS_UUID", b"JSON_ARRAY",
    b"JSON_ARRAYAGG", b"JSON_ARRAY_APPEND", b"JSON_ARRAY_INSERT", b"JSON_ARRAY_INTERSECT",
    b"JSON_COMPACT", b"JSON_CONTAINS", b"JSON_CONTAINS_PATH", b"JSON_DEPTH", b"JSON_DETAILED",
    b"JSON_EQUALS", b"JSON_EXISTS", b"JSON_EXTRACT", b"JSON_INSERT", b"JSON_KEYS", b"JSON_LENGTH",
    b"JSON_LOOSE", b"JSON_MERGE", b"JSON_MERGE_PATCH", b"JSON_MERGE_PRESERVE", b"JSON_NORMALIZE",
    b"JSON_OBJECT", b"JSON_OBJECTAGG", b"JSON_OBJECT_FILTER_KEYS", b"JSON_OBJECT_TO_ARRAY",
    b"JSON_OVERLAPS", b"JSON_PRETTY", b"JSON_QUERY", b"JSON_QUOTE", b"JSON_REMOVE",
    b"JSON_REPLACE", b"JSON_SCHEMA_VALID", b"JSON_SEARCH", b"JSON_SET", b"JSON_STORAGE_FREE",
    b"JSON_STORAGE_SIZE", b"JSON_TABLE", b"JSON_TYPE", b"JSON_UNQUOTE", b"JSON_VALID",
    b"JSON_VALUE", b"LAG", b"LASTVAL", b"LAST_DAY", b"LAST_INSERT_ID", b"LAST_VALUE", b"LCASE",
    b"LEAD", b"LEAST", b"LEFT", b"LENGTH", b"LENGTHB", b"LINESTRING", b"LN", b"LOAD_FILE",
    b"LOCALTIME", b"LOCALTIMESTAMP", b"LOCATE", b"LOG", b"LOG10", b"LOG2", b"LOWER", b"LPAD",
    b"LTRIM", b"MAKEDATE", b"MAKETIME", b"MAKE_SET", b"MASTER_GTID_WAIT", b"MASTER_POS_WAIT",
    b"MATCH", b"MAX", b"MBRCONTAINS", b"MBRINTERSECTS", b"MBRWITHIN", b"MD5", b"MEDIAN",
    b"MICROSECOND", b"MID", b"MIN", b"MINUTE", b"MOD", b"MONTH", b"MONTHNAME", b"MONTHS_BETWEEN",
    b"MULTILINESTRING", b"MULTIPOINT", b"MULTIPOLYGON", b"NATURAL_SORT_KEY", b"NEXTVAL", b"NOW",
    b"NTH_VALUE", b"NTILE", b"NULLIF", b"NVL", b"NVL2", b"OCT", b"OCTET_LENGTH", b"OLD_PASSWORD",
    b"ORD", b"PASSWORD", b"PERCENTILE_CONT", b"PERCENTILE_DISC", b"PERCENT_RANK", b"PERIOD_ADD",
    b"PERIOD_DIFF", b"PI", b"POINT", b"POLYGON", b"POSITION", b"POW", b"POWER", b"QUARTER",
    b"QUOTE", b"RADIANS", b"RAND", b"RANDOM_BYTES", b"RANK", b"REGEXP_INSTR", b"REGEXP_LIKE",
    b"REGEXP_REPLACE", b"REGEXP_SUBSTR", b"RELEASE_ALL_LOCKS", b"RELEASE_LOCK", b"REPEAT",
    b"REPLACE", b"REVERSE", b"RIGHT", b"ROLES_GRAPHML", b"ROUND", b"ROW_COUNT", b"ROW_NUMBER",
    b"RPAD", b"RTRIM", b"SCHEMA", b"SECOND", b"SEC_TO_TIME", b"SESSION_USER", b"SETVAL",
    b"SFORMAT", b"SHA", b"SHA1", b"SHA2", b"SIGN", b"SIN", b"SLEEP", b"SOUNDEX",
    b"SOURCE_POS_WAIT", b"SPACE", b"SQRT", b"STATEMENT_DIGEST", b"STATEMENT_DIGEST_TEXT", b"STD",
    b"STDDEV", b"STDDEV_POP", b"STDDEV_SAMP", b"STRCMP", b"STR_TO_DATE", b"ST_AREA",
    b"ST_ASBINARY", b"ST_ASGEOJSON", b"ST_ASTEXT", b"ST_ASWKB", b"ST_ASWKT", b"ST_BUFFER",
    b"ST_CENTROID", b"ST_CONTAINS", b"ST_CONVEXHULL", b"ST_CROSSES", b"ST_DIFFERENCE",
    b"ST_DIMENSION", b"ST_DISJOINT", b"ST_DISTANCE", b"ST_DISTANCE_SPHERE", b"ST_ENDPOINT",
    b"ST_ENVELOPE", b"ST_EQUALS", b"ST_GEOHASH", b"ST_GEOMCOLLFROMTEXT", b"ST_GEOMETRYN",
    b"ST_GEOMETRYTYPE", b"ST_GEOMFROMGEOJSON", b"ST_GEOMFROMTEXT", b"ST_GEOMFROMWKB",
    b"ST_INTERSECTION", b"ST_INTERSECTS", b"ST_ISCLOSED", b"ST_ISEMPTY", b"ST_ISVALID",
    b"ST_LATITUDE", b"ST_LENGTH", b"ST_LINEFROMTEXT", b"ST_LONGITUDE", b"ST_MAKEENVELOPE",
    b"ST_NUMGEOMETRIES", b"ST_NUMPOINTS", b"ST_OVERLAPS", b"ST_POINTFROMTEXT", b"ST_POINTN",
    b"ST_POLYFROMTEXT", b"ST_SRID", b"ST_STARTPOINT", b"ST_SYMDIFFERENCE", b"ST_TOUCHES",
    b"ST_UNION", b"ST_WITHIN", b"ST_X", b"ST_Y", b"SUBDATE", b"SUBSTR", b"SUBSTRING",
    b"SUBSTRING_INDEX", b"SUBTIME", b"SUM", b"SYSDATE", b"SYSTEM_USER", b"SYS_GUID", b"TAN",
    b"TIME", b"TIMEDIFF", b"TIMESTAMP", b"TIMESTAMPADD", b"TIMESTAMPDIFF", b"TIME_FORMAT",
    b"TIME_TO_SEC", b"TO_BASE64", b"TO_CHAR", b"TO_DAYS", b"TO_SECONDS", b"TRIM", b"TRUNCATE",
    b"UCASE", b"UNCOMPRESS", b"UNCOMPRESSED_LENGTH", b"UNHEX", b"UNIX_TIMESTAMP", b"UPDATEXML",
    b"UPPER", b"USER", b"UTC_DATE", b"UTC_TIME", b"UTC_TIMESTAMP", b"UUID", b"UUID_SHORT",
    b"UUID_TO_BIN", b"VALIDATE_PASSWORD_STRENGTH", b"VALUE", b"VALUES", b"VARIANCE", b"VAR_POP",
    b"VAR_SAMP", b"VERSION", b"WAIT_FOR_EXECUTED_GTID_SET", b"WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS",
    b"WEEK", b"WEEKDAY", b"WEEKOFYEAR", b"WEIGHT_STRING", b"YEAR", b"YEARWEEK",
];

const KEYWORDS: &[&[u8]] = &[
    b"AGAINST", b"ALL", b"AND", b"ANY", b"AS", b"ASC", b"BETWEEN", b"BINARY", b"BY", b"CASE",
    b"COLLATE", b"COLUMNS", b"CURRENT", b"DESC", b"DISTINCT", b"DIV", b"ELSE", b"EMPTY", b"ERROR",
    b"ESCAPE", b"EXCEPT", b"EXISTS", b"FILTER", b"FOLLOWING", b"FORCE", b"FROM", b"GROUP",
    b"HAVING", b"IGNORE", b"IN", b"INDEX", b"INTERSECT", b"INTO", b"IS", b"JOIN", b"KEY",
    b"LATERAL", b"LIKE", b"LIMIT", b"MEMBER", b"NESTED", b"NOT", b"OF", b"OFFSET", b"ON", b"OR",
    b"ORDER", b"ORDINALITY", b"OVER", b"PARTITION", b"PATH", b"PRECEDING", b"PRIMARY", b"RANGE",
    b"RECURSIVE", b"REGEXP", b"RETURNING", b"RLIKE", b"ROW", b"ROWS", b"SELECT", b"SET", b"SOME",
    b"SOUNDS", b"STRAIGHT_JOIN", b"TABLE", b"THEN", b"UNBOUNDED", b"UNION", b"USE", b"USING",
    b"WHEN", b"WHERE", b"WINDOW", b"WITH", b"WITHIN", b"XOR",
];

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn lists_are_sorted_for_binary_search() {
        assert!(BUILTINS.windows(2).all(|w| w[0] < w[1]));
        assert!(KEYWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn common_functions_are_known() {
        for f in [&b"COUNT"[..], b"NOW", b"COALESCE", b"JSON_EXTRACT", b"SLEEP", b"UUID"] {
            assert!(is_builtin(f), "{}", String::from_utf8_lossy(f));
        }
        assert!(!is_builtin(b"MY_AUDIT_FN"));
    }
}
