package store

import (
	"context"
	"slices"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

type gormDB = gorm.DB

var lockForUpdate = clause.Locking{Strength: "UPDATE"}

// ValidateFlag rejects unknown flag names.
func ValidateFlag(flag string) error {
	if !slices.Contains(KnownFlags, flag) {
		return Errorf(EINVALID, "unknown flag %q (known: %v)", flag, KnownFlags)
	}
	return nil
}

// DomainFlagEnabled reports a domain's flag, falling back to the default.
func (s *Store) DomainFlagEnabled(ctx context.Context, domain, flag string) (bool, error) {
	if err := ValidateFlag(flag); err != nil {
		return false, err
	}
	var enabled []bool
	err := s.gorm.WithContext(ctx).Model(&DomainFlag{}).Where("domain = ? AND flag = ?", domain, flag).
		Pluck("enabled", &enabled).Error
	if err != nil || len(enabled) == 0 {
		return s.ProcessRepeatersDefault(), err
	}
	return enabled[0], nil
}

// SetDomainFlag turns a domain's flag on or off.
func (s *Store) SetDomainFlag(ctx context.Context, domain, flag string, enabled bool) error {
	if err := ValidateDomainFlag(domain, flag); err != nil {
		return err
	}
	return s.gorm.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "domain"}, {Name: "flag"}},
		DoUpdates: clause.Assignments(map[string]any{"enabled": enabled, "updated_at": gorm.Expr("now()")}),
	}).Create(&DomainFlag{Domain: domain, Flag: flag, Enabled: enabled}).Error
}

// ListDomainFlags returns every explicitly set flag, by domain.
func (s *Store) ListDomainFlags(ctx context.Context) ([]DomainFlag, error) {
	var out []DomainFlag
	return out, s.gorm.WithContext(ctx).Order("domain, flag").Find(&out).Error
}

// Domains returns every domain that owns a repeater.
func (s *Store) Domains(ctx context.Context) ([]string, error) {
	var out []string
	return out, s.gorm.WithContext(ctx).Model(&Repeater{}).Distinct("domain").Order("domain").Pluck("domain", &out).Error
}
