package webhook

import (
	"fmt"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/flow"
)

// Body formats (the format key).
const (
	FormatVigil = "vigil" // export.AppendAlertJSON, docs/FLOWS.md
	FormatOCSF  = "ocsf"  // export.AppendAlertOCSF, docs/OCSF.md
)

// Encoder makes one webhook body per alert: the item is the exact JSON
// the transport posts. It carries alerts only.
type Encoder struct {
	format  string
	product export.OCSFProduct
}

// NewEncoder returns an encoder of bodies in format; "" means "vigil".
// product fills the OCSF metadata.
func NewEncoder(format string, product export.OCSFProduct) (*Encoder, error) {
	switch format {
	case "", FormatVigil:
		return &Encoder{format: FormatVigil}, nil
	case FormatOCSF:
		return &Encoder{format: format, product: product}, nil
	}
	return nil, fmt.Errorf("webhook format %q: want %q or %q", format, FormatVigil, FormatOCSF)
}

// Kinds returns KindAlerts.
func (e *Encoder) Kinds() export.Kinds { return export.KindAlerts }

// AppendFlow returns dst unchanged: webhooks carry no flows.
func (e *Encoder) AppendFlow(dst []byte, _ *flow.Record) []byte { return dst }

// AppendAlert appends the JSON body for a to dst.
func (e *Encoder) AppendAlert(dst []byte, a *flow.Alert) []byte {
	if e.format == FormatOCSF {
		return export.AppendAlertOCSF(dst, a, e.product)
	}
	return export.AppendAlertJSON(dst, a)
}
