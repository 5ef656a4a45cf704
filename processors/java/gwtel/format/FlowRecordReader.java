package gwtel.format;

import java.io.IOException;
import java.io.Serializable;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;

/**
 * Reads one FlowRecord from the bytes of one JSON value, strictly, as the loader's codec (schemas/codec.py on
 * orjson) does: the same verdict and reason for every value, with no conversion of a value's type.
 *
 * <p>The value is read in one pass of Jackson's streaming parser into a slot per known field (a repeated key:
 * the last one counts, as in a parsed object), then every field is judged in the order of the field table, as
 * {@code schemas.checks.checked} does. The field table, bounds and reason names come from the format's options,
 * which Python generates from schemas/checks.py; the checks across fields (addresses, rules) stay in the job's
 * SQL, generated from the same table.
 *
 * <p>Where orjson and Jackson read JSON differently, this follows orjson: the whole value must be valid UTF-8 (no
 * byte order mark, no encoded surrogate), an escaped lone surrogate is refused, an integer beyond [-2^63, 2^64-1]
 * is a float, and a number whose double is infinite is not JSON.
 */
public final class FlowRecordReader implements Serializable {

    private static final long serialVersionUID = 1L;

    /** Reason names, in the order the {@code reasons} option lists them. */
    static final int NOT_JSON = 0;
    static final int WRONG_VERSION = 1;
    static final int MISSING_FIELD = 2;
    static final int BAD_TYPE = 3;
    static final int BAD_VALUE = 4;
    static final int OUT_OF_RANGE = 5;
    static final int REASON_COUNT = 6;

    static final int KIND_INT = 0;
    static final int KIND_STR = 1;
    static final int KIND_HIST = 2;

    // What a field's slot holds after the parse.
    private static final byte ABSENT = 0;
    private static final byte NULL = 1;
    private static final byte INT = 2; // long in longs[], or a BigInteger in objects[]
    private static final byte FLOAT = 3;
    private static final byte BOOL = 4;
    private static final byte STRING = 5;
    private static final byte OTHER = 6; // an object, or an array where no histogram is expected
    private static final byte BINS = 7; // a list: objects[] holds a List<Object[]> (see readBins)

    private static final BigInteger U64_MAX = BigInteger.ONE.shiftLeft(64).subtract(BigInteger.ONE);
    private static final BigInteger I64_MIN = BigInteger.valueOf(Long.MIN_VALUE);
    private static final Pattern QUOTED_INT = Pattern.compile("[+-]?[0-9]+|");

    /** One integer bound: {@code lo <= v <= hi}; below is bad_value, above is {@code above}. */
    static final class Bound implements Serializable {
        private static final long serialVersionUID = 1L;
        final BigInteger lo;
        final BigInteger hi;
        final int above;
        // The same as longs, clamped (a bound beyond a long is never crossed by a long).
        final long loLong;
        final long hiLong;

        Bound(BigInteger lo, BigInteger hi, int above) {
            this.lo = lo;
            this.hi = hi;
            this.above = above;
            this.loLong = lo.bitLength() < 64 ? lo.longValue() : lo.signum() < 0 ? Long.MIN_VALUE : Long.MAX_VALUE;
            this.hiLong = hi.bitLength() < 64 ? hi.longValue() : hi.signum() < 0 ? Long.MIN_VALUE : Long.MAX_VALUE;
        }
    }

    /** One field of the record, as the {@code fields} option describes it. */
    static final class Field implements Serializable {
        private static final long serialVersionUID = 1L;
        final String name;
        final int kind;
        final Bound bound; // KIND_INT only
        final String absent; // "missing", "null", "empty" or "=<default>"

        Field(String name, int kind, Bound bound, String absent) {
            this.name = name;
            this.kind = kind;
            this.bound = bound;
            this.absent = absent;
        }
    }

    /** Why a value is refused: the reason's index and the field's name ("" for the whole value). */
    public static final class Problem {
        public final int reason;
        public final String field;

        Problem(int reason, String field) {
            this.reason = reason;
            this.field = field;
        }
    }

    final Field[] fields;
    final String[] reasons;
    private final Bound binB;
    private final Bound binC;
    private final int versionField;
    private final long version;
    private final Map<String, Integer> index = new HashMap<>();
    /** Address fields: the field, and the field naming its IP version (-1: either family, or "" not known). */
    private final int[] addressField;
    private final int[] addressVersion;

    private transient JsonFactory json;
    private transient CharsetDecoder utf8;
    private transient byte[] tags;
    private transient long[] longs;
    private transient Object[] objects;
    /** The value of the last integer `integer` accepted (no allocation per field). */
    private transient long accepted;

    /**
     * @param fieldSpec {@code name|kind|lo|hi|above|absent} per field, ';'-separated, in the order of the checks
     * @param binSpec the bounds of a histogram bin's {@code b} and {@code c}: {@code lo|hi|above;lo|hi|above}
     * @param reasonList the reason names, ','-separated, in the order of the constants above
     * @param versionName the field naming the schema version, and {@code version} the one this reader takes
     * @param addressSpec {@code name|ip-version-field} per address field, ';'-separated, the version field empty for
     *     a field of either family that may be "" (not known); "" for none
     */
    public FlowRecordReader(String fieldSpec, String binSpec, String reasonList, String versionName, long version,
            String addressSpec) {
        this.reasons = reasonList.split(",", -1);
        if (reasons.length != REASON_COUNT) {
            throw new IllegalArgumentException("expected " + REASON_COUNT + " reasons, got " + reasonList);
        }
        List<Field> parsed = new ArrayList<>();
        for (String spec : fieldSpec.split(";")) {
            String[] p = spec.split("\\|", -1);
            if (p.length != 6) {
                throw new IllegalArgumentException("bad field spec: " + spec);
            }
            int kind = "int".equals(p[1]) ? KIND_INT : "str".equals(p[1]) ? KIND_STR : KIND_HIST;
            Bound bound = kind == KIND_INT ? bound(p[2], p[3], p[4]) : null;
            index.put(p[0], parsed.size());
            parsed.add(new Field(p[0], kind, bound, p[5]));
        }
        this.fields = parsed.toArray(new Field[0]);
        String[] bins = binSpec.split(";");
        String[] b = bins[0].split("\\|", -1);
        String[] c = bins[1].split("\\|", -1);
        this.binB = bound(b[0], b[1], b[2]);
        this.binC = bound(c[0], c[1], c[2]);
        Integer v = index.get(versionName);
        if (v == null) {
            throw new IllegalArgumentException("no field " + versionName);
        }
        this.versionField = v;
        this.version = version;
        String[] specs = addressSpec.isEmpty() ? new String[0] : addressSpec.split(";");
        this.addressField = new int[specs.length];
        this.addressVersion = new int[specs.length];
        for (int k = 0; k < specs.length; k++) {
            String[] p = specs[k].split("\\|", -1);
            addressField[k] = fieldIndex(p[0]);
            addressVersion[k] = p[1].isEmpty() ? -1 : fieldIndex(p[1]);
        }
    }

    private int fieldIndex(String name) {
        Integer i = index.get(name);
        if (i == null) {
            throw new IllegalArgumentException("no field " + name);
        }
        return i;
    }

    private Bound bound(String lo, String hi, String above) {
        return new Bound(new BigInteger(lo), new BigInteger(hi), reasonIndex(above));
    }

    private int reasonIndex(String name) {
        for (int i = 0; i < reasons.length; i++) {
            if (reasons[i].equals(name)) {
                return i;
            }
        }
        throw new IllegalArgumentException("unknown reason " + name);
    }

    private void init() {
        if (json == null) {
            json = new JsonFactory();
            utf8 = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT);
            tags = new byte[fields.length];
            longs = new long[fields.length];
            objects = new Object[fields.length];
        }
    }

    /**
     * Reads {@code len} bytes of {@code data} from {@code off}; on success {@code out[i]} holds field i's value
     * (Long, String, List of long[2] bins, or null) and the result is null, else the result names the problem.
     */
    public Problem read(byte[] data, int off, int len, Object[] out) {
        init();
        java.util.Arrays.fill(tags, ABSENT);
        java.util.Arrays.fill(objects, null);
        boolean object;
        try {
            if (!strictUtf8(data, off, len)) {
                return new Problem(NOT_JSON, "");
            }
            object = parse(data, off, len);
        } catch (IOException | NotJson e) {
            return new Problem(NOT_JSON, "");
        }
        if (!object) {
            return new Problem(BAD_TYPE, "");
        }
        if (!versionMatches()) {
            return new Problem(WRONG_VERSION, fields[versionField].name);
        }
        for (int i = 0; i < fields.length; i++) {
            int r = judge(i, out);
            if (r >= 0) {
                return new Problem(r, fields[i].name);
            }
        }
        canonicalAddresses(out);
        return null;
    }

    /**
     * Every address field as its one canonical text ({@link Addresses#canonical}), or null when it is not an
     * address the loader takes: the job's record rule refuses a null address, so its verdict stays the loader's,
     * and one host has one text in the windows' distinct counts. An address of a version other than 4 is read as
     * IPv6, as the loader reads it.
     */
    private void canonicalAddresses(Object[] out) {
        for (int k = 0; k < addressField.length; k++) {
            int i = addressField[k];
            if (out[i] == null) {
                continue;
            }
            int family = addressVersion[k] < 0 ? 0 : Long.valueOf(4).equals(out[addressVersion[k]]) ? 4 : 6;
            out[i] = Addresses.canonical((String) out[i], family);
        }
    }

    private static final class NotJson extends Exception {
        private static final long serialVersionUID = 1L;

        NotJson() {
            super(null, null, false, false);
        }
    }

    private static final NotJson NOT_JSON_ERROR = new NotJson();

    /** orjson reads only UTF-8, without a byte order mark; Jackson would guess other encodings or skip it. */
    private boolean strictUtf8(byte[] data, int off, int len) {
        int end = off + len;
        for (int i = off; i < end; i++) {
            if (data[i] < 0) {
                if (len >= 3 && data[off] == (byte) 0xEF && data[off + 1] == (byte) 0xBB && data[off + 2] == (byte) 0xBF) {
                    return false;
                }
                try {
                    utf8.reset();
                    utf8.decode(ByteBuffer.wrap(data, off, len));
                    return true;
                } catch (CharacterCodingException e) {
                    return false;
                }
            }
        }
        return true;
    }

    /** Whether the value is an object; its known fields go to the slots. Throws on anything orjson refuses. */
    private boolean parse(byte[] data, int off, int len) throws IOException, NotJson {
        try (JsonParser p = json.createParser(data, off, len)) {
            JsonToken t = p.nextToken();
            if (t == null) {
                throw NOT_JSON_ERROR;
            }
            boolean object = t == JsonToken.START_OBJECT;
            if (object) {
                while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
                    String name = p.currentName();
                    checkText(name);
                    Integer i = index.get(name);
                    JsonToken v = p.nextToken();
                    if (i == null) {
                        scan(p, v);
                    } else {
                        slot(p, v, i);
                    }
                }
                if (t != JsonToken.END_OBJECT) {
                    throw NOT_JSON_ERROR;
                }
            } else {
                scan(p, t);
            }
            if (p.nextToken() != null) {
                throw NOT_JSON_ERROR; // text after the value
            }
            return object;
        }
    }

    private void slot(JsonParser p, JsonToken v, int i) throws IOException, NotJson {
        objects[i] = null;
        switch (v) {
            case VALUE_NULL:
                tags[i] = NULL;
                break;
            case VALUE_TRUE:
                tags[i] = BOOL;
                longs[i] = 1;
                break;
            case VALUE_FALSE:
                tags[i] = BOOL;
                longs[i] = 0;
                break;
            case VALUE_NUMBER_INT:
                if (p.getNumberType() == JsonParser.NumberType.BIG_INTEGER) {
                    BigInteger big = bigInteger(p);
                    tags[i] = big == null ? FLOAT : INT;
                    longs[i] = 0;
                    objects[i] = big;
                } else {
                    tags[i] = INT;
                    longs[i] = p.getLongValue();
                }
                break;
            case VALUE_NUMBER_FLOAT:
                double d = p.getDoubleValue();
                if (Double.isInfinite(d)) {
                    throw NOT_JSON_ERROR;
                }
                tags[i] = FLOAT;
                // Only the version compares a float's value (in Python 1.0 == 1).
                longs[i] = d == (double) version ? version : Long.MIN_VALUE;
                break;
            case VALUE_STRING:
                String s = p.getText();
                checkText(s);
                tags[i] = STRING;
                objects[i] = s;
                break;
            case START_ARRAY:
                if (fields[i].kind == KIND_HIST) {
                    tags[i] = BINS;
                    objects[i] = readBins(p);
                } else {
                    tags[i] = OTHER;
                    scan(p, v);
                }
                break;
            default:
                tags[i] = OTHER;
                scan(p, v);
        }
    }

    /**
     * A histogram's items: per item an Object[2] of its b and c as slots ({tag, value}), or null when the item is
     * not an object with exactly the keys b and c.
     */
    private List<Object[]> readBins(JsonParser p) throws IOException, NotJson {
        List<Object[]> items = new ArrayList<>();
        JsonToken t;
        while ((t = p.nextToken()) != JsonToken.END_ARRAY) {
            if (t != JsonToken.START_OBJECT) {
                scan(p, t);
                items.add(null);
                continue;
            }
            Object[] bc = new Object[2];
            boolean other = false;
            while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
                String name = p.currentName();
                checkText(name);
                JsonToken v = p.nextToken();
                int k = "b".equals(name) ? 0 : "c".equals(name) ? 1 : -1;
                if (k < 0) {
                    other = true;
                    scan(p, v);
                } else {
                    bc[k] = scalar(p, v);
                }
            }
            items.add(other || bc[0] == null || bc[1] == null ? null : bc);
        }
        return items;
    }

    /**
     * An integer beyond a long as orjson reads it: within [-2^63, 2^64-1] an integer, else a float (null here),
     * and not JSON when that float is infinite.
     */
    private static BigInteger bigInteger(JsonParser p) throws IOException, NotJson {
        BigInteger big = p.getBigIntegerValue();
        if (big.compareTo(I64_MIN) >= 0 && big.compareTo(U64_MAX) <= 0) {
            return big;
        }
        if (Double.isInfinite(big.doubleValue())) {
            throw NOT_JSON_ERROR;
        }
        return null;
    }

    /** A bin's b or c: a Long or BigInteger for an integer, a String, or a Boolean.FALSE marker for any other. */
    private Object scalar(JsonParser p, JsonToken v) throws IOException, NotJson {
        switch (v) {
            case VALUE_NUMBER_INT:
                if (p.getNumberType() == JsonParser.NumberType.BIG_INTEGER) {
                    BigInteger big = bigInteger(p);
                    return big == null ? Boolean.FALSE : big;
                }
                return p.getLongValue();
            case VALUE_STRING:
                String s = p.getText();
                checkText(s);
                return s;
            default:
                scan(p, v);
                return Boolean.FALSE;
        }
    }

    /** Reads past a value nobody uses, still refusing what orjson would refuse inside it. */
    private void scan(JsonParser p, JsonToken t) throws IOException, NotJson {
        int depth = 0;
        do {
            switch (t) {
                case START_OBJECT:
                case START_ARRAY:
                    depth++;
                    break;
                case END_OBJECT:
                case END_ARRAY:
                    depth--;
                    break;
                case FIELD_NAME:
                    checkText(p.currentName());
                    break;
                case VALUE_STRING:
                    checkText(p.getText());
                    break;
                case VALUE_NUMBER_INT:
                    if (p.getNumberType() == JsonParser.NumberType.BIG_INTEGER
                            && Double.isInfinite(p.getBigIntegerValue().doubleValue())) {
                        throw NOT_JSON_ERROR;
                    }
                    break;
                case VALUE_NUMBER_FLOAT:
                    if (Double.isInfinite(p.getDoubleValue())) {
                        throw NOT_JSON_ERROR;
                    }
                    break;
                default:
                    break;
            }
            if (depth == 0) {
                return;
            }
            t = p.nextToken();
            if (t == null) {
                throw NOT_JSON_ERROR;
            }
        } while (true);
    }

    /** orjson refuses a string holding a lone surrogate (which only an escape can make here). */
    private static void checkText(String s) throws NotJson {
        for (int i = 0; i < s.length(); i++) {
            char ch = s.charAt(i);
            if (Character.isSurrogate(ch)) {
                if (Character.isHighSurrogate(ch) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
                    i++;
                } else {
                    throw NOT_JSON_ERROR;
                }
            }
        }
    }

    /** The codec's test {@code version in (V, "V")}: in Python 1 == 1.0 == True. */
    private boolean versionMatches() {
        int i = versionField;
        switch (tags[i]) {
            case INT:
                return objects[i] == null && longs[i] == version;
            case FLOAT:
            case BOOL:
                return longs[i] == version;
            case STRING:
                return Long.toString(version).equals(objects[i]);
            default:
                return false;
        }
    }

    /** Field i's value into out[i], or the index of the reason it is refused (-1: accepted). */
    private int judge(int i, Object[] out) {
        Field f = fields[i];
        byte tag = tags[i];
        if (tag == ABSENT || tag == NULL) {
            switch (f.absent) {
                case "missing":
                    return MISSING_FIELD;
                case "null":
                    out[i] = null;
                    return -1;
                case "empty":
                    out[i] = new ArrayList<long[]>();
                    return -1;
                default:
                    String d = f.absent.substring(1);
                    out[i] = f.kind == KIND_INT ? (Object) Long.valueOf(d) : d;
                    return -1;
            }
        }
        if (f.kind == KIND_STR) {
            if (tag != STRING) {
                return BAD_TYPE;
            }
            out[i] = objects[i];
            return -1;
        }
        if (f.kind == KIND_INT) {
            int r = tag == INT && objects[i] == null ? integer(longs[i], f.bound)
                    : integer(tag == INT || tag == STRING ? objects[i] : Boolean.FALSE, f.bound);
            if (r < 0) {
                out[i] = accepted;
            }
            return r;
        }
        if (tag != BINS) {
            return BAD_TYPE;
        }
        @SuppressWarnings("unchecked")
        List<Object[]> items = (List<Object[]>) objects[i];
        List<long[]> bins = new ArrayList<>(items.size());
        for (Object[] item : items) {
            if (item == null) {
                return BAD_TYPE;
            }
            int r = integer(item[0], binB);
            if (r >= 0) {
                return r;
            }
            long b = accepted;
            r = integer(item[1], binC);
            if (r >= 0) {
                return r;
            }
            bins.add(new long[] {b, accepted});
        }
        out[i] = bins;
        return -1;
    }

    /** {@link #integer(Object, Bound)} of a JSON integer that fits a long. */
    private int integer(long x, Bound bound) {
        if (x < bound.loLong) {
            return BAD_VALUE;
        }
        if (x > bound.hiLong) {
            return bound.above;
        }
        accepted = x;
        return -1;
    }

    /**
     * The codec's {@code _int}: an integer (a Long or BigInteger), or a quoted decimal ("" is 0), within the
     * bound; -1 and the value in {@code accepted}, or the reason's index.
     */
    private int integer(Object v, Bound bound) {
        if (v instanceof Long) {
            return integer((long) (Long) v, bound);
        }
        BigInteger big;
        if (v instanceof BigInteger) {
            big = (BigInteger) v;
        } else if (v instanceof String && QUOTED_INT.matcher((String) v).matches()) {
            String s = (String) v;
            big = s.isEmpty() ? BigInteger.ZERO : new BigInteger(s.startsWith("+") ? s.substring(1) : s);
        } else {
            return BAD_TYPE;
        }
        if (big.compareTo(bound.lo) < 0) {
            return BAD_VALUE;
        }
        if (big.compareTo(bound.hi) > 0) {
            return bound.above;
        }
        accepted = big.longValue(); // within the bound: at most 2^63-1 for every field the job reads
        return -1;
    }
}
