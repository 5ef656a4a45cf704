package gwtel.format;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.table.data.GenericArrayData;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.util.Collector;

/**
 * One row per FlowRecord of a Kafka value: the record's columns, or, for a record the loader would refuse, only
 * the problem columns (reason, field, line index, the line's text) with every record column null, so a refused
 * record can neither enter a window nor move the watermark.
 *
 * <p>With {@code lines}, a value holds several records as JSON lines ('\n'-separated, a final '\n' allowed); each
 * line is judged alone and keeps its index. Without it the value is one record, as the loader reads it.
 */
public final class FlowRecordDeserializer implements DeserializationSchema<RowData> {

    private static final long serialVersionUID = 1L;

    /** How each column of the produced row is filled. */
    static final int COL_STRING = 0;
    static final int COL_INT = 1;
    static final int COL_BIGINT = 2;
    static final int COL_BINS = 3;

    private final FlowRecordReader reader;
    private final boolean lines;
    /** Per record field (the reader's order): the column it goes to, and how. */
    private final int[] column;
    private final int[] kind;
    /** Columns of the problem: reason, field, line, value. */
    private final int[] problem;
    private final int arity;
    private final TypeInformation<RowData> producedType;
    private transient Object[] values;

    FlowRecordDeserializer(FlowRecordReader reader, boolean lines, int[] column, int[] kind, int[] problem, int arity,
            TypeInformation<RowData> producedType) {
        this.reader = reader;
        this.lines = lines;
        this.column = column;
        this.kind = kind;
        this.problem = problem;
        this.arity = arity;
        this.producedType = producedType;
    }

    @Override
    public RowData deserialize(byte[] message) throws IOException {
        throw new UnsupportedOperationException("a value may hold several records: use deserialize(message, out)");
    }

    @Override
    public void deserialize(byte[] message, Collector<RowData> out) {
        if (values == null) {
            values = new Object[reader.fields.length];
        }
        if (message == null) {
            out.collect(refused(FlowRecordReader.NOT_JSON, "", 0, ""));
            return;
        }
        if (!lines) {
            out.collect(row(message, 0, message.length, 0));
            return;
        }
        int start = 0;
        int line = 0;
        for (int i = 0; i <= message.length; i++) {
            if (i == message.length || message[i] == '\n') {
                if (i == message.length && start == i && line > 0) {
                    break; // the '\n' that ends the last line
                }
                out.collect(row(message, start, i - start, line));
                start = i + 1;
                line++;
            }
        }
    }

    private GenericRowData row(byte[] data, int off, int len, int line) {
        FlowRecordReader.Problem p = reader.read(data, off, len, values);
        if (p != null) {
            return refused(p.reason, p.field, line, new String(data, off, len, StandardCharsets.UTF_8));
        }
        GenericRowData row = new GenericRowData(arity);
        for (int i = 0; i < column.length; i++) {
            Object v = values[i];
            if (v == null) {
                continue;
            }
            switch (kind[i]) {
                case COL_STRING:
                    row.setField(column[i], StringData.fromString((String) v));
                    break;
                case COL_INT:
                    long x = (Long) v;
                    if (x < Integer.MIN_VALUE || x > Integer.MAX_VALUE) {
                        // A guard only: every field the job reads as INT has a bound below 2^31 (wider ones are BIGINT).
                        return refused(FlowRecordReader.OUT_OF_RANGE, reader.fields[i].name, line,
                                new String(data, off, len, StandardCharsets.UTF_8));
                    }
                    row.setField(column[i], (int) x);
                    break;
                case COL_BIGINT:
                    row.setField(column[i], v);
                    break;
                default:
                    @SuppressWarnings("unchecked")
                    List<long[]> bins = (List<long[]>) v;
                    Object[] items = new Object[bins.size()];
                    for (int k = 0; k < items.length; k++) {
                        long[] bc = bins.get(k);
                        items[k] = GenericRowData.of((int) bc[0], bc[1]);
                    }
                    row.setField(column[i], new GenericArrayData(items));
            }
        }
        row.setField(problem[2], line);
        return row;
    }

    private GenericRowData refused(int reason, String field, int line, String text) {
        GenericRowData row = new GenericRowData(arity);
        row.setField(problem[0], StringData.fromString(reader.reasons[reason]));
        row.setField(problem[1], StringData.fromString(field));
        row.setField(problem[2], line);
        row.setField(problem[3], StringData.fromString(text));
        return row;
    }

    @Override
    public boolean isEndOfStream(RowData nextElement) {
        return false;
    }

    @Override
    public TypeInformation<RowData> getProducedType() {
        return producedType;
    }
}
