package ipfix

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/vigil-sensor/vigil/export"
)

// ipfixBuilt is a message built but not yet sent.
type ipfixBuilt struct {
	now       time.Time
	items     int  // items packed (from the front of the slice)
	records   int  // data records in it, selector records included
	templates bool // it starts with the templates
}

// build packs items from the front of the slice into t.msg: the
// templates first when the session needs them, an options record for
// every rate not yet announced right before the first record that uses
// it, and data sets of consecutive records with the same template. It
// stops at the size limit or at a malformed item, for which it returns
// a *export.RejectedError.
func (t *Transport) build(items [][]byte) (ipfixBuilt, error) {
	now := t.opt.Clock.Now()
	b := ipfixBuilt{now: now, templates: t.needTemplates(now)}
	limit := t.opt.MaxMessageSize
	msg := append(t.msg[:0], make([]byte, ipfixHeaderLen)...)
	if b.templates {
		msg = append(msg, ipfixTemplateSets...)
	}
	t.newSel = t.newSel[:0]
	setStart, setTemplate := -1, uint16(0)
	var err error
	for _, raw := range items {
		it, perr := parseIPFIXItem(raw)
		if perr != nil {
			err = &export.RejectedError{Err: perr}
			break
		}
		need := len(it.record)
		announce := !t.announced(it.rate, b.templates)
		if announce {
			need += ipfixSelectorLen
		}
		if announce || setStart < 0 || it.template != setTemplate {
			need += ipfixSetHeaderLen
		}
		if len(msg)+need > limit {
			break
		}
		if announce {
			msg = ipfixEndSet(msg, setStart)
			setStart = -1
			msg = ipfixAppendSelector(msg, it.rate)
			t.newSel = append(t.newSel, it.rate)
			b.records += 2
		}
		if setStart < 0 || it.template != setTemplate {
			msg = ipfixEndSet(msg, setStart)
			setStart, setTemplate = len(msg), it.template
			msg = binary.BigEndian.AppendUint16(msg, it.template)
			msg = append(msg, 0, 0)
		}
		msg = append(msg, it.record...)
		b.records++
		b.items++
	}
	msg = ipfixEndSet(msg, setStart)
	binary.BigEndian.PutUint16(msg[0:], ipfixVersion)
	binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)))
	binary.BigEndian.PutUint32(msg[4:], uint32(now.Unix()))
	binary.BigEndian.PutUint32(msg[8:], t.sess.seq)
	binary.BigEndian.PutUint32(msg[12:], t.opt.ObservationDomainID)
	t.msg = msg
	if b.items == 0 && err == nil {
		// Only possible with a limit below the size of one record.
		err = fmt.Errorf("IPFIX item does not fit in a message of %d bytes", limit)
	}
	return b, err
}

func ipfixEndSet(msg []byte, start int) []byte {
	if start >= 0 {
		binary.BigEndian.PutUint16(msg[start+2:], uint16(len(msg)-start))
	}
	return msg
}

func (t *Transport) needTemplates(now time.Time) bool {
	s := &t.sess
	if !s.templated {
		return true
	}
	if t.network != "udp" {
		return false
	}
	if r := t.opt.TemplateRefresh; r > 0 && now.Sub(s.templatesAt) >= r {
		return true
	}
	n := t.opt.TemplateRefreshMessages
	return n > 0 && s.sinceRefresh >= n
}

// announced says whether the collector already has rate's selector
// record, counting records in the message being built; a message with
// templates announces every rate again.
func (t *Transport) announced(rate uint32, withTemplates bool) bool {
	for _, r := range t.newSel {
		if r == rate {
			return true
		}
	}
	if withTemplates {
		return false
	}
	_, ok := t.sess.announced[rate]
	return ok
}

// commit records that the message built last was sent.
func (t *Transport) commit(b ipfixBuilt) {
	t.wireBytes += uint64(len(t.msg))
	s := &t.sess
	s.seq += uint32(b.records)
	if b.templates {
		s.templated = true
		s.templatesAt = b.now
		s.sinceRefresh = 0
		clear(s.announced)
	} else {
		s.sinceRefresh++
	}
	if len(s.announced)+len(t.newSel) > ipfixMaxSelectors {
		clear(s.announced)
	}
	for _, r := range t.newSel {
		s.announced[r] = struct{}{}
	}
}
