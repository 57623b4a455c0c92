package loadgen

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// FreePorts returns n distinct TCP ports that were free on 127.0.0.1, taken
// from 20000-32767: below Linux's ephemeral range, so that no outgoing
// connection takes one before its server binds it.
func FreePorts(n int) ([]int, error) {
	const low, high = 20000, 32768
	seen := map[int]bool{}
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 100*n {
			return nil, fmt.Errorf("no %d free ports in %d-%d", n, low, high-1)
		}
		p := low + rand.IntN(high-low)
		if seen[p] {
			continue
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		out = append(out, p)
	}
	return out, nil
}
