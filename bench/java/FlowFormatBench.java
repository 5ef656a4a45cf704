import java.io.DataInputStream;
import java.io.FileInputStream;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import gwtel.format.FlowRecordFormatFactory;
import gwtel.format.FlowRecordReader;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.formats.common.TimestampFormat;
import org.apache.flink.formats.json.JsonParserRowDataDeserializationSchema;
import org.apache.flink.formats.json.JsonRowDataDeserializationSchema;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.metrics.groups.UnregisteredMetricsGroup;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.runtime.typeutils.InternalTypeInfo;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.logical.RowType;
import org.apache.flink.util.Collector;
import org.apache.flink.util.SimpleUserCodeClassLoader;
import org.apache.flink.util.UserCodeClassLoader;

/**
 * CPU time per Kafka value of the job's readers, one thread, one JVM: the record format gwtel-flow against
 * Flink's json format (its JsonNode tree reader and its streaming reader, the default) plus the token pass the
 * job's side path made over every value before (RecordProblem: one more parse, nothing built).
 *
 * <p>Arguments: the values file (int length + bytes each), rounds, the table's columns (name:TYPE,...), then
 * the gwtel-flow options: fields, bins, reasons, version-field, version, addresses. Prints one line per round and reader:
 * {@code round reader cpu_ns rows}.
 */
public final class FlowFormatBench {

    private FlowFormatBench() {}

    interface Reader {
        int read(byte[] value) throws IOException;
    }

    public static void main(String[] args) throws Exception {
        List<byte[]> values = new ArrayList<>();
        try (DataInputStream in = new DataInputStream(new FileInputStream(args[0]))) {
            while (in.available() > 0) {
                byte[] v = new byte[in.readInt()];
                in.readFully(v);
                values.add(v);
            }
        }
        int rounds = Integer.parseInt(args[1]);
        List<DataTypes.Field> cols = new ArrayList<>();
        for (String c : args[2].split(",")) {
            String[] nt = c.split(":");
            DataType t = "INT".equals(nt[1]) ? DataTypes.INT() : "BIGINT".equals(nt[1]) ? DataTypes.BIGINT()
                    : "STRING".equals(nt[1]) ? DataTypes.STRING()
                    : DataTypes.ARRAY(DataTypes.ROW(DataTypes.FIELD("b", DataTypes.INT()),
                            DataTypes.FIELD("c", DataTypes.BIGINT())));
            cols.add(DataTypes.FIELD(nt[0], t));
        }
        RowType recordType = (RowType) DataTypes.ROW(cols.toArray(new DataTypes.Field[0])).getLogicalType();
        String[] problem = {"_reason", "_field", "_line", "_value"};
        List<DataTypes.Field> withProblem = new ArrayList<>(cols);
        withProblem.add(DataTypes.FIELD(problem[0], DataTypes.STRING()));
        withProblem.add(DataTypes.FIELD(problem[1], DataTypes.STRING()));
        withProblem.add(DataTypes.FIELD(problem[2], DataTypes.INT()));
        withProblem.add(DataTypes.FIELD(problem[3], DataTypes.STRING()));
        DataType flowType = DataTypes.ROW(withProblem.toArray(new DataTypes.Field[0]));

        FlowRecordReader reader = new FlowRecordReader(args[3], args[4], args[5], args[6], Long.parseLong(args[7]),
                args[8]);
        DeserializationSchema<RowData> strict = FlowRecordFormatFactory.deserializer(reader, false, problem,
                flowType, InternalTypeInfo.of((RowType) flowType.getLogicalType()));
        // The same reader handing the addresses on as they came (the reader before canonical addresses).
        FlowRecordReader asWritten = new FlowRecordReader(args[3], args[4], args[5], args[6], Long.parseLong(args[7]),
                "");
        DeserializationSchema<RowData> strictAsWritten = FlowRecordFormatFactory.deserializer(asWritten, false,
                problem, flowType, InternalTypeInfo.of((RowType) flowType.getLogicalType()));
        // The json format as the job configured it: missing fields are null, parse errors skipped.
        DeserializationSchema<RowData> tree = open(new JsonRowDataDeserializationSchema(recordType,
                InternalTypeInfo.of(recordType), false, true, TimestampFormat.SQL));
        DeserializationSchema<RowData> streaming = open(new JsonParserRowDataDeserializationSchema(recordType,
                InternalTypeInfo.of(recordType), false, true, TimestampFormat.SQL));
        JsonFactory json = new JsonFactory();
        int[] rows = new int[1];
        Collector<RowData> count = new Collector<RowData>() {
            @Override
            public void collect(RowData row) {
                rows[0]++;
            }

            @Override
            public void close() {}
        };
        String[] names = {"gwtel_flow", "gwtel_flow_addresses_as_written", "json_tree", "json_streaming",
            "record_problem_pass"};
        Reader[] readers = {
            v -> { strict.deserialize(v, count); return 0; },
            v -> { strictAsWritten.deserialize(v, count); return 0; },
            v -> { tree.deserialize(v, count); return 0; },
            v -> { streaming.deserialize(v, count); return 0; },
            v -> tokenPass(json, v),
        };
        ThreadMXBean cpu = ManagementFactory.getThreadMXBean();
        for (int round = 0; round < rounds; round++) {
            for (int k = 0; k < readers.length; k++) {
                rows[0] = 0;
                int sink = 0;
                long t0 = cpu.getCurrentThreadCpuTime();
                for (byte[] v : values) {
                    sink += readers[k].read(v);
                }
                long ns = cpu.getCurrentThreadCpuTime() - t0;
                System.out.println(round + " " + names[k] + " " + ns + " " + (rows[0] + sink));
            }
        }
    }

    private static DeserializationSchema<RowData> open(DeserializationSchema<RowData> schema) throws Exception {
        schema.open(new DeserializationSchema.InitializationContext() {
            @Override
            public MetricGroup getMetricGroup() {
                return new UnregisteredMetricsGroup();
            }

            @Override
            public UserCodeClassLoader getUserCodeClassLoader() {
                return SimpleUserCodeClassLoader.create(FlowFormatBench.class.getClassLoader());
            }
        });
        return schema;
    }

    /** What the former side path's RecordProblem did per value: every token read, the version looked at. */
    private static int tokenPass(JsonFactory json, byte[] value) throws IOException {
        int version = 0;
        try (JsonParser p = json.createParser(value)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                return 0;
            }
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                String name = p.currentName();
                JsonToken t = p.nextToken();
                if ("schema_version".equals(name) && t == JsonToken.VALUE_NUMBER_INT) {
                    version = p.getIntValue();
                }
                p.skipChildren();
            }
        }
        return version == 1 ? 1 : 0;
    }
}
