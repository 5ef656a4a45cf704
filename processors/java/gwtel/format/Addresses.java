package gwtel.format;

/**
 * An address field's text as ClickHouse reads, stores and prints it (schemas/addresses.py is the reference): the
 * reading of {@code isIPv4String} / {@code isIPv6String} with the loader's guards, and the text of the stored
 * {@code IPv6} value. One host has one text, however the record spelled it, so the job's distinct counts count
 * addresses, not spellings.
 *
 * <p>No DNS, no {@code InetAddress}: a hand parser over the characters, one pass and one small array per address.
 */
final class Addresses {

    private Addresses() {}

    /** The dotted quad of an IPv4 address as Python's ipaddress reads it: four 0-255, no leading zero. */
    static long ipv4(String s) {
        return quad(s, 0, s.length(), 3, false);
    }

    /**
     * The octets {@code a.b.c.d} in {@code s[from, to)} as a 32-bit value, or -1. {@code maxDigits} and
     * {@code zeros}: an IPv4 address takes up to 3 digits without leading zeros; the dotted tail of an IPv6
     * address up to 4, leading zeros allowed (ClickHouse's reading).
     */
    private static long quad(String s, int from, int to, int maxDigits, boolean zeros) {
        long value = 0;
        int octets = 0;
        int i = from;
        while (true) {
            int start = i;
            int octet = 0;
            while (i < to && i - start < maxDigits + 1) {
                char c = s.charAt(i);
                if (c < '0' || c > '9') {
                    break;
                }
                octet = octet * 10 + (c - '0');
                i++;
            }
            int digits = i - start;
            if (digits == 0 || digits > maxDigits || octet > 255 || (!zeros && digits > 1 && s.charAt(start) == '0')) {
                return -1;
            }
            value = (value << 8) | octet;
            octets++;
            if (octets == 4) {
                return i == to ? value : -1;
            }
            if (i >= to || s.charAt(i) != '.') {
                return -1;
            }
            i++;
        }
    }

    /**
     * The eight 16-bit groups of an IPv6 address, or null: Python's ipaddress reading (at most one {@code ::}, which
     * stands for at least one group; a dotted tail last), without a scope id, with leading zeros in the tail.
     */
    static int[] ipv6(String s) {
        int n = s.length();
        if (n < 2) {
            return null;
        }
        int[] groups = new int[8];
        int count = 0; // groups written
        int gap = -1; // index in groups where `::` stands
        int i = 0;
        if (s.charAt(0) == ':') {
            if (s.charAt(1) != ':') {
                return null;
            }
            gap = 0;
            i = 2;
            if (i == n) {
                return groups; // "::"
            }
        }
        while (true) {
            // one group, or the dotted tail
            int start = i;
            int value = 0;
            while (i < n && i - start < 5) {
                int d = Character.digit(s.charAt(i), 16);
                char c = s.charAt(i);
                if (d < 0 || c > 'f') {
                    break;
                }
                value = (value << 4) | d;
                i++;
            }
            if (i < n && s.charAt(i) == '.') {
                if (count > 6) {
                    return null;
                }
                long v4 = quad(s, start, n, 4, true);
                if (v4 < 0) {
                    return null;
                }
                groups[count++] = (int) (v4 >>> 16);
                groups[count++] = (int) (v4 & 0xFFFF);
                break;
            }
            if (i == start || i - start > 4 || count == 8) {
                return null;
            }
            groups[count++] = value;
            if (i == n) {
                break;
            }
            if (s.charAt(i) != ':') {
                return null;
            }
            i++;
            if (i == n) {
                return null; // a single ':' at the end
            }
            if (s.charAt(i) == ':') {
                if (gap >= 0) {
                    return null; // a second `::`, or `:::`
                }
                gap = count;
                i++;
                if (i == n) {
                    break;
                }
            }
        }
        if (gap < 0) {
            return count == 8 ? groups : null;
        }
        if (count > 7) {
            return null; // `::` stands for at least one group
        }
        int tail = count - gap;
        System.arraycopy(groups, gap, groups, 8 - tail, tail);
        java.util.Arrays.fill(groups, gap, 8 - tail, 0);
        return groups;
    }

    /**
     * The canonical text of an address field, or null when it is not an address the loader takes: with
     * {@code family} 4 an IPv4 address, 6 an IPv6 one, 0 either or "" (an exporter or next hop not known). The
     * text is ClickHouse's of the stored value (schemas/addresses.py {@code text_sql}): an IPv4 address and an
     * IPv4-mapped IPv6 one as a dotted quad, any other IPv6 address in its short form.
     */
    static String canonical(String s, int family) {
        if (family == 0 && s.isEmpty()) {
            return s;
        }
        if (family != 6) {
            long v4 = ipv4(s);
            if (v4 >= 0) {
                return s; // the dotted quad without leading zeros is its own text
            }
            if (family == 4) {
                return null;
            }
        }
        int[] g = ipv6(s);
        if (g == null) {
            return null;
        }
        String text = text(g);
        // `::` is how the store keeps an exporter or next hop not known, and prints it as ""
        return family == 0 && "::".equals(text) ? "" : text;
    }

    /** ClickHouse's IPv6NumToString of the groups, with an IPv4-mapped address as its dotted quad. */
    static String text(int[] g) {
        // the longest run of zero groups (the first of equal ones), if at least two long
        int best = -1;
        int bestLen = 0;
        for (int i = 0; i < 8;) {
            if (g[i] != 0) {
                i++;
                continue;
            }
            int j = i;
            while (j < 8 && g[j] == 0) {
                j++;
            }
            if (j - i > bestLen) {
                best = i;
                bestLen = j - i;
            }
            i = j;
        }
        if (bestLen < 2) {
            best = -1;
        }
        StringBuilder sb = new StringBuilder(39);
        if (best == 0 && bestLen == 5 && g[5] == 0xFFFF) {
            return dotted(sb, g).toString(); // IPv4-mapped: the dotted quad alone
        }
        for (int i = 0; i < 8; i++) {
            if (best >= 0 && i >= best && i < best + bestLen) {
                if (i == best) {
                    sb.append(':');
                }
                continue;
            }
            if (i != 0) {
                sb.append(':');
            }
            if (i == 6 && best == 0 && bestLen == 6) {
                return dotted(sb, g).toString(); // IPv4-compatible, as ClickHouse prints it
            }
            sb.append(Integer.toHexString(g[i]));
        }
        if (best >= 0 && best + bestLen == 8) {
            sb.append(':');
        }
        return sb.toString();
    }

    private static StringBuilder dotted(StringBuilder sb, int[] g) {
        return sb.append(g[6] >>> 8).append('.').append(g[6] & 0xFF).append('.').append(g[7] >>> 8).append('.')
                .append(g[7] & 0xFF);
    }
}
