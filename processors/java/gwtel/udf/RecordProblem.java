package gwtel.udf;

import java.io.IOException;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * Why a Kafka value is not a FlowRecord of the expected version, or NULL when it is one.
 *
 * <p>Arguments: the value as text and the expected {@code schema_version}. Result: {@code not_json} when
 * the value is NULL, not well-formed JSON or not a JSON object; {@code wrong_version} when the object's
 * top-level {@code schema_version} is missing or does not read as the expected version the way the job's
 * JSON format reads an INT (a number truncated to an int, or a string of one); otherwise NULL.
 *
 * <p>One pass of Jackson's streaming parser over the whole value, without building any object: the
 * validation side path reads every record, and a tree of maps per record cost several times more.
 */
public final class RecordProblem extends ScalarFunction {

    public static final String NOT_JSON = "not_json";
    public static final String WRONG_VERSION = "wrong_version";
    private static final String VERSION_FIELD = "schema_version";
    private static final JsonFactory JSON = new JsonFactory();

    public String eval(String value, Integer expectedVersion) {
        if (value == null) {
            return NOT_JSON;
        }
        boolean versionOk = false;
        try (JsonParser parser = JSON.createParser(value)) {
            if (parser.nextToken() != JsonToken.START_OBJECT) {
                return NOT_JSON;
            }
            JsonToken token;
            while ((token = parser.nextToken()) == JsonToken.FIELD_NAME) {
                String name = parser.currentName();
                JsonToken field = parser.nextToken();
                if (VERSION_FIELD.equals(name)) {
                    // A repeated key: the last one counts, as in the format's row.
                    versionOk = readsAs(parser, field, expectedVersion);
                }
                // Nested values are still read token by token: a syntax error inside one is found.
                parser.skipChildren();
            }
            if (token != JsonToken.END_OBJECT) {
                return NOT_JSON;
            }
        } catch (IOException e) {
            return NOT_JSON;
        }
        return versionOk ? null : WRONG_VERSION;
    }

    /** Whether the current value converts to {@code expected} as the JSON format converts an INT field. */
    private static boolean readsAs(JsonParser parser, JsonToken token, Integer expected) {
        if (expected == null || token == null) {
            return false;
        }
        try {
            switch (token) {
                case VALUE_NUMBER_INT:
                case VALUE_NUMBER_FLOAT:
                    return parser.getIntValue() == expected;
                case VALUE_STRING:
                    return Integer.parseInt(parser.getText().trim()) == expected;
                default:
                    return false;
            }
        } catch (IOException | NumberFormatException e) {
            return false;
        }
    }
}
