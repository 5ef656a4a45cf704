package gwtel.format;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.List;

import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.data.ArrayData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.types.DataType;
import org.apache.flink.util.Collector;

/**
 * The format's rows for values given on standard input, for tests that compare them with the codec's verdicts.
 *
 * <p>Arguments: fields, bins, reasons, version-field, version, lines (true/false), the integer fields the table
 * reads as INT (','-separated; the others are BIGINT), addresses (the format's option). Input: one value per line,
 * base64. Output per produced row, tab-separated: value number, line index, reason (empty when accepted), field,
 * then the record's columns as text ("null" for a null one, bins as b:c,...).
 */
public final class Verdicts {

    private Verdicts() {}

    public static void main(String[] args) throws Exception {
        FlowRecordReader reader = new FlowRecordReader(args[0], args[1], args[2], args[3], Long.parseLong(args[4]),
                args[7]);
        boolean lines = Boolean.parseBoolean(args[5]);
        List<String> ints = List.of(args[6].split(","));
        DataType[] cols = new DataType[reader.fields.length + 4];
        String[] names = new String[cols.length];
        DataType bins = DataTypes.ARRAY(DataTypes.ROW(DataTypes.FIELD("b", DataTypes.INT()),
                DataTypes.FIELD("c", DataTypes.BIGINT())));
        for (int i = 0; i < reader.fields.length; i++) {
            FlowRecordReader.Field f = reader.fields[i];
            names[i] = f.name;
            cols[i] = f.kind == FlowRecordReader.KIND_STR ? DataTypes.STRING()
                    : f.kind == FlowRecordReader.KIND_HIST ? bins
                    : ints.contains(f.name) ? DataTypes.INT() : DataTypes.BIGINT();
        }
        String[] problem = {"_reason", "_field", "_line", "_value"};
        DataType[] problemTypes = {DataTypes.STRING(), DataTypes.STRING(), DataTypes.INT(), DataTypes.STRING()};
        for (int k = 0; k < 4; k++) {
            names[reader.fields.length + k] = problem[k];
            cols[reader.fields.length + k] = problemTypes[k];
        }
        DataTypes.Field[] fields = new DataTypes.Field[cols.length];
        for (int i = 0; i < cols.length; i++) {
            fields[i] = DataTypes.FIELD(names[i], cols[i]);
        }
        FlowRecordDeserializer d = FlowRecordFormatFactory.deserializer(reader, lines, problem, DataTypes.ROW(fields),
                null);
        PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII));
        String text;
        int n = 0;
        while ((text = in.readLine()) != null) {
            byte[] value = Base64.getDecoder().decode(text.trim());
            int number = n++;
            d.deserialize(value, new Collector<RowData>() {
                @Override
                public void collect(RowData row) {
                    out.println(render(number, row, reader.fields.length, cols));
                }

                @Override
                public void close() {}
            });
        }
        out.flush();
    }

    private static String render(int number, RowData row, int count, DataType[] cols) {
        StringBuilder sb = new StringBuilder();
        int base = count;
        sb.append(number).append('\t').append(row.getInt(base + 2)).append('\t');
        sb.append(row.isNullAt(base) ? "" : row.getString(base).toString()).append('\t');
        sb.append(row.isNullAt(base + 1) ? "" : row.getString(base + 1).toString());
        for (int i = 0; i < count; i++) {
            sb.append('\t');
            if (row.isNullAt(i)) {
                sb.append("null");
                continue;
            }
            String type = cols[i].getLogicalType().getTypeRoot().name();
            switch (type) {
                case "INTEGER":
                    sb.append(row.getInt(i));
                    break;
                case "BIGINT":
                    sb.append(row.getLong(i));
                    break;
                case "ARRAY":
                    ArrayData a = row.getArray(i);
                    List<String> parts = new java.util.ArrayList<>();
                    for (int k = 0; k < a.size(); k++) {
                        RowData bc = a.getRow(k, 2);
                        parts.add(bc.getInt(0) + ":" + bc.getLong(1));
                    }
                    sb.append(String.join(",", parts));
                    break;
                default:
                    sb.append(Base64.getEncoder().encodeToString(
                            row.getString(i).toString().getBytes(StandardCharsets.UTF_8)));
            }
        }
        return sb.toString();
    }
}
