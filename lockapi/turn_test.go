package lockapi

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestTurnOrdersSubmissions starts the goroutines of a sequence in reverse
// and checks they still submit in sequence order.
func TestTurnOrdersSubmissions(t *testing.T) {
	const n = 50
	turns := make([]*Turn, n)
	var prev *Turn
	for i := range turns {
		turns[i] = NewTurn(prev)
		prev = turns[i]
	}
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := n - 1; i >= 0; i-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer turns[i].Done()
			if err := turns[i].Wait(context.Background()); err != nil {
				t.Errorf("turn %d: %v", i, err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			turns[i].Done()
		}()
	}
	wg.Wait()
	for i, got := range order {
		if got != i {
			t.Fatalf("submission %d was turn %d; order %v", i, got, order)
		}
	}
}

func TestTurnEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"nil turn never waits", func(t *testing.T) {
			var tr *Turn
			if err := tr.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			tr.Done()
		}},
		{"first turn never waits", func(t *testing.T) {
			if err := NewTurn(nil).Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
		{"done twice is harmless", func(t *testing.T) {
			a := NewTurn(nil)
			a.Done()
			a.Done()
			if err := NewTurn(a).Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
		{"done before the predecessor holds the successor back", func(t *testing.T) {
			a := NewTurn(nil)
			b := NewTurn(a)
			c := NewTurn(b)
			b.Done() // refused before the log, while a has not submitted
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if err := c.Wait(ctx); err == nil {
				t.Fatal("c went before a submitted")
			}
			a.Done()
			if err := c.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
		{"wait ends with its context", func(t *testing.T) {
			a := NewTurn(nil) // never done
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if err := NewTurn(a).Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Wait = %v, want deadline exceeded", err)
			}
		}},
		{"context carries the turn", func(t *testing.T) {
			a := NewTurn(nil)
			if got := TurnFrom(WithTurn(context.Background(), a)); got != a {
				t.Fatalf("TurnFrom = %p, want %p", got, a)
			}
			if got := TurnFrom(context.Background()); got != nil {
				t.Fatalf("TurnFrom(empty) = %p, want nil", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}
